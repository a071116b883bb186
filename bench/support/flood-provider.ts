import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { floodPiece, stampMicros } from "./flood-text.js";

/**
 * The relay and capacity benches' model provider, in its own process: an
 * OpenAI-compatible chat-completions server whose reply is chosen by the
 * last user message, so one runtime can be driven into floods, paced
 * streams and quick replies at once:
 *
 * - `flood N`: N chunks of 16 characters, written as fast as the socket
 *   takes them (the whole SSE body is built once and written in 64 KiB
 *   slices, honouring backpressure);
 * - `paced N RATE`: N chunks at RATE chunks/s, each chunk's text the time it
 *   was written (16 digits: microseconds on the host's monotonic clock), so a watcher can
 *   measure provider write → watcher decode;
 * - anything else: a one-chunk reply.
 *
 * Prints its base URL on stdout, then serves until killed.
 */
const SLICE_BYTES = 64 * 1024;
const head = { id: "chatcmpl-bench", object: "chat.completion.chunk", created: 1_700_000_000, model: "bench" };

function chunkEvent(delta: object, finishReason: string | null = null): string {
  return `data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }] })}\n\n`;
}

function closingEvents(completion: number): string {
  const usage = { ...head, choices: [], usage: { prompt_tokens: 10, completion_tokens: completion, total_tokens: 10 + completion } };
  return `${chunkEvent({}, "stop")}data: ${JSON.stringify(usage)}\n\ndata: [DONE]\n\n`;
}

const floodBodies = new Map<number, Buffer>();

function floodBody(count: number): Buffer {
  let body = floodBodies.get(count);
  if (!body) {
    const parts = [chunkEvent({ role: "assistant", content: "" })];
    for (let i = 0; i < count; i++) parts.push(chunkEvent({ content: floodPiece(i) }));
    parts.push(closingEvents(count));
    body = Buffer.from(parts.join(""), "utf8");
    floodBodies.set(count, body);
  }
  return body;
}

function startStream(res: ServerResponse): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  res.flushHeaders();
}

async function flood(res: ServerResponse, count: number): Promise<void> {
  startStream(res);
  const body = floodBody(count);
  for (let offset = 0; offset < body.length && !res.destroyed; offset += SLICE_BYTES) {
    if (!res.write(body.subarray(offset, offset + SLICE_BYTES))) {
      await new Promise((resolve) => res.once("drain", resolve));
    }
  }
  res.end();
}

/** One paced stream: its response, chunks left and the time its next chunk is due. */
interface PacedStream {
  res: ServerResponse;
  left: number;
  count: number;
  every: number;
  next: number;
}

/**
 * Every paced stream's next write, by the millisecond it is due. One timer
 * per millisecond serves them all: a timer per stream per chunk (20,000 a
 * second at 1,000 runs) cost the provider process more CPU than the writes,
 * and on a 2-core machine that CPU is taken from the runtime being
 * measured. A chunk's text is still the time it is written.
 */
const dueAt = new Map<number, PacedStream[]>();
let tickTimer: NodeJS.Timeout | undefined;
let lastTick = 0;

function schedule(stream: PacedStream): void {
  const slot = Math.ceil(stream.next);
  const bucket = dueAt.get(slot);
  if (bucket) bucket.push(stream);
  else dueAt.set(slot, [stream]);
  if (!tickTimer) {
    lastTick = Math.floor(performance.now());
    tickTimer = setInterval(tick, 1);
  }
}

function tick(): void {
  const now = Math.floor(performance.now());
  for (let slot = lastTick + 1; slot <= now; slot++) {
    const bucket = dueAt.get(slot);
    if (!bucket) continue;
    dueAt.delete(slot);
    for (const stream of bucket) writeNext(stream);
  }
  lastTick = now;
  if (dueAt.size === 0) {
    clearInterval(tickTimer);
    tickTimer = undefined;
  }
}

/** The JSON around a paced chunk's text, built once. */
const [pacedBefore, pacedAfter] = chunkEvent({ content: "STAMP" }).split("STAMP") as [string, string];

function writeNext(stream: PacedStream): void {
  const { res } = stream;
  if (res.destroyed) return;
  res.write(pacedBefore + stampMicros() + pacedAfter);
  if (--stream.left === 0) {
    res.end(closingEvents(stream.count));
    return;
  }
  stream.next += stream.every;
  schedule(stream);
}

function paced(res: ServerResponse, count: number, rate: number): void {
  startStream(res);
  res.write(chunkEvent({ role: "assistant", content: "" }));
  const every = 1000 / rate;
  // Scheduled against absolute times so the pace does not drift; a random
  // phase keeps concurrent streams from all writing in the same tick.
  schedule({ res, left: count, count, every, next: performance.now() + Math.random() * every });
}

const server = createServer((req, res) => {
  const parts: Buffer[] = [];
  req.on("data", (part: Buffer) => parts.push(part));
  req.on("end", () => {
    const body = JSON.parse(Buffer.concat(parts).toString("utf8")) as { messages: { role: string; content?: unknown }[] };
    const last = [...body.messages].reverse().find((m) => m.role === "user");
    const words = (typeof last?.content === "string" ? last.content : "").split(" ");
    if (words[0] === "flood") void flood(res, Number(words[1]));
    else if (words[0] === "paced") paced(res, Number(words[1]), Number(words[2]));
    else {
      startStream(res);
      res.end(`${chunkEvent({ role: "assistant", content: "pong" })}${closingEvents(1)}`);
    }
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`http://127.0.0.1:${port}/v1\n`);
});
