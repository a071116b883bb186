import { Code, type ConnectError } from "@connectrpc/connect";
import { ErrorReason } from "../../../gen/worker_runtime/v1/errors_pb.js";
import type { CommandContext } from "./command-context.js";
import { typedError } from "./typed-error.js";

/**
 * The runtime's largest input (limits.max_input_bytes), so that `send` and
 * `chat` refuse longer text before sending it: past the gRPC message size
 * the server could only cut the stream, and reading an unbounded stdin
 * into memory first would be a bound the client lacks. 0 when the server
 * does not say; then the server's own check decides.
 */
export async function inputLimit(context: CommandContext): Promise<number> {
  return (await context.runtimeLimits())?.maxInputBytes ?? 0;
}

/**
 * Text up to this many UTF-8 bytes is sent without asking the runtime for
 * its limit (one GetRuntime less per `send` of ordinary text). Every
 * runtime reads a request this size whole: limits.ts refuses a
 * maxMessageBytes without 6 KiB of room for a run's and an event's own
 * fields, and a request adds under 300 bytes of ids. So the runtime's own
 * check answers such text, with the same LIMIT_EXCEEDED.
 */
const ALWAYS_RECEIVED_BYTES = 4096;

/** Refuses `text` over the runtime's limit, asking for the limit only when the text is longer than {@link ALWAYS_RECEIVED_BYTES}. */
export async function checkInput(context: CommandContext, text: string): Promise<void> {
  if (Buffer.byteLength(text, "utf8") > ALWAYS_RECEIVED_BYTES) checkInputSize(text, await inputLimit(context));
}

/** The refusal of text over the limit, typed as the runtime types its own (LIMIT_EXCEEDED on input.text). */
function tooLong(limit: number): ConnectError {
  return typedError(
    Code.InvalidArgument,
    ErrorReason.LIMIT_EXCEEDED,
    `input.text: is more than ${limit} bytes; at most ${limit} allowed (the runtime's max_input_bytes)`,
    { field: "input.text", limit: String(limit) },
  );
}

/** Throws the typed refusal when `text` is over `limit` UTF-8 bytes (0 = no known limit). */
export function checkInputSize(text: string, limit: number): void {
  if (limit > 0 && Buffer.byteLength(text, "utf8") > limit) throw tooLong(limit);
}

/**
 * All of `input` as text without its final newline, reading no more than
 * the limit allows (plus that newline): longer input is refused as soon as
 * it is seen, without holding the rest in memory. The limit is asked for
 * (`limit()`) only once the input is longer than {@link ALWAYS_RECEIVED_BYTES}.
 */
export async function readBounded(input: NodeJS.ReadableStream & { destroy(): void }, limit: () => Promise<number>): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  let bound: number | undefined;
  for await (const chunk of input) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    size += bytes.length;
    if (bound === undefined && size > ALWAYS_RECEIVED_BYTES + 1) bound = await limit();
    if (bound !== undefined && bound > 0 && size > bound + 1) {
      input.destroy();
      throw tooLong(bound);
    }
    chunks.push(bytes);
  }
  const text = Buffer.concat(chunks).toString("utf8").replace(/\n$/, "");
  if (bound !== undefined) checkInputSize(text, bound);
  return text;
}

/** One line of {@link readBoundedLines}: its text, or the refusal of a line over the limit. */
export type BoundedLine = { text: string } | { refused: ConnectError };

/**
 * The lines of `input` (split at "\n", without it), each refused as soon
 * as it passes `limit` bytes (0 = no known limit): the rest of a refused
 * line is dropped as it arrives, never held, so one huge line costs no
 * more memory than the limit and the reader goes on with the next line.
 * One byte over the limit is let through for a "\r" before the "\n"; the
 * caller checks the text it keeps (after trimming) with
 * {@link checkInputSize}.
 */
export async function* readBoundedLines(input: AsyncIterable<Buffer | string>, limit: number): AsyncGenerator<BoundedLine> {
  let parts: Buffer[] = [];
  let size = 0;
  // Set from a line's refusal to its end.
  let dropping = false;
  for await (const chunk of input) {
    let bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    for (;;) {
      const newline = bytes.indexOf(0x0a);
      const end = newline === -1 ? bytes.length : newline;
      if (!dropping) {
        size += end;
        if (limit > 0 && size > limit + 1) {
          dropping = true;
          parts = [];
          yield { refused: tooLong(limit) };
        } else if (end > 0) {
          parts.push(bytes.subarray(0, end));
        }
      }
      if (newline === -1) break;
      if (!dropping) yield { text: Buffer.concat(parts).toString("utf8") };
      parts = [];
      size = 0;
      dropping = false;
      bytes = bytes.subarray(newline + 1);
    }
  }
  // A last line without its newline, as readline gives it.
  if (!dropping && size > 0) yield { text: Buffer.concat(parts).toString("utf8") };
}
