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

/**
 * Milliseconds on the host's monotonic clock (CLOCK_MONOTONIC, since boot)
 * with sub-millisecond precision: one clock for every process on the host,
 * so a provider's stamp and a watcher's reading compare directly. Not
 * `performance.timeOrigin + now()`: each process reads the wall clock once
 * at its start, so a clock step (NTP, a VM's clock sync) between two
 * processes' starts would shift every latency by the step.
 */
export function hostClockMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** The current time as a paced chunk's text: monotonic microseconds ({@link hostClockMs}), 16 digits. */
export function stampMicros(): string {
  return String(Math.floor(hostClockMs() * 1000)).padStart(CHUNK_CHARS, "0");
}

/** Write times ({@link hostClockMs}) of the paced chunks in `text`, which holds whole chunks only. */
export function stampsIn(text: string): number[] {
  const stamps: number[] = [];
  for (let i = 0; i + CHUNK_CHARS <= text.length; i += CHUNK_CHARS) stamps.push(Number(text.slice(i, i + CHUNK_CHARS)) / 1000);
  return stamps;
}
