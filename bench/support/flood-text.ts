import { performance } from "node:perf_hooks";

/**
 * The text the flood provider streams, shared by the provider and the
 * clients that check it: every chunk is exactly {@link CHUNK_CHARS}
 * characters, so a client can check the whole text (floods) or split it
 * back into per-chunk write times (paced streams) however the relay
 * grouped the chunks into events.
 */
export const CHUNK_CHARS = 16;

/** The i-th flood chunk's text. */
export function floodPiece(i: number): string {
  return `${String(i).padStart(CHUNK_CHARS - 1, "0")} `;
}

/** The whole text of a flood of `count` chunks. */
export function floodText(count: number): string {
  let text = "";
  for (let i = 0; i < count; i++) text += floodPiece(i);
  return text;
}

/** Milliseconds since the epoch with sub-millisecond precision, comparable across processes on one host. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The current time as a paced chunk's text: microseconds since the epoch, 16 digits. */
export function stampMicros(): string {
  return String(Math.floor(epochMs() * 1000)).padStart(CHUNK_CHARS, "0");
}

/** Write times (epoch ms) of the paced chunks in `text`, which holds whole chunks only. */
export function stampsIn(text: string): number[] {
  const stamps: number[] = [];
  for (let i = 0; i + CHUNK_CHARS <= text.length; i += CHUNK_CHARS) stamps.push(Number(text.slice(i, i + CHUNK_CHARS)) / 1000);
  return stamps;
}
