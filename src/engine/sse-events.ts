import { createParser } from "eventsource-parser";
import { APIError, OpenAIError } from "openai";
import type { ChatCompletionChunk } from "openai/resources/chat/completions";
import { fetchBodyError, takeNodeBody } from "./provider-fetch.js";
import { type SseBatches, SseBodyReader, type SsePayloadParser } from "./sse-body-reader.js";

/**
 * Reads a streamed chat-completions response body as batches of SSE data
 * payloads, one batch per read of the body, in linear time.
 *
 * The `openai` SDK (6.x) stays the client for requests, error statuses and
 * types, but its stream iterator copies the remaining buffer once per event,
 * so a burst of hundreds of events in one read costs time quadratic in its
 * size; that was the largest single cost of relaying a fast stream. The fix
 * upstream is in the 7.x line, which requires Node 22, and this package
 * supports Node 20. So the body is parsed here with `eventsource-parser`
 * (3.x: Node 18+, no dependencies, linear), keeping the SDK's semantics:
 * events after `[DONE]` are ignored, and an `error` object in a payload
 * becomes an APIError without status (see {@link parseChunk}). Unlike the
 * SDK's iterator, an event is bounded ({@link SseEventTooLargeError}), and
 * an `event: error` event is an error whatever its data holds.
 *
 * Payloads are returned unparsed so the caller can spread the JSON parsing
 * of a large burst over several turns of the event loop. Leaving the
 * iteration early cancels the body, which closes the provider's response.
 * A Node body (the provider fetch's) is read push-based by
 * {@link SseBodyReader}: a batch holds what arrived since the last one.
 */
export function sseDataBatches(response: Response, maxEventChars: number): SseBatches {
  const nodeBody = takeNodeBody(response);
  const parser = payloadParser(maxEventChars);
  // Node buffers when the provider fetch made the response (provider-fetch.ts), pushed as they arrive.
  if (nodeBody) return new SseBodyReader(nodeBody, parser, fetchBodyError);
  const reads = { lastReadAt: performance.now() };
  const batches = webBatches(response.body, parser, reads);
  return {
    next: () => batches.next(),
    return: () => batches.return(undefined),
    [Symbol.asyncIterator]() {
      return this;
    },
    get sawDone() {
      return parser.done;
    },
    get lastReadAt() {
      return reads.lastReadAt;
    },
  };
}

/** A web body's batches, a batch per read (responses another fetch made). */
async function* webBatches(
  body: ReadableStream<Uint8Array> | null,
  parser: SsePayloadParser,
  reads: { lastReadAt: number },
): AsyncGenerator<string[]> {
  if (!body) throw new OpenAIError("the provider's streamed response has no body");
  const decoder = new TextDecoder();
  for await (const chunk of webReads(body)) {
    reads.lastReadAt = performance.now();
    const batch: string[] = [];
    parser.feed(decoder.decode(chunk, { stream: true }), batch);
    if (batch.length > 0) yield batch;
    // Complete: leaving cancels the rest of the body.
    if (parser.done) return;
  }
  const tail: string[] = [];
  parser.feed(decoder.decode(), tail);
  parser.end(tail);
  if (tail.length > 0) yield tail;
}

/**
 * The SDK's semantics on top of `eventsource-parser`: events after `[DONE]`
 * are ignored, and an event over `maxEventChars` throws
 * {@link SseEventTooLargeError}. Unlike the SDK, the last event is kept
 * when the body ends cleanly without the blank line that completes it
 * (see {@link SsePayloadParser.end}).
 */
function payloadParser(maxEventChars: number): SsePayloadParser {
  let out: string[] = [];
  let done = false;
  let tooLarge = false;
  const parser = createParser({
    onEvent: (event) => {
      if (done) return;
      if (event.data.startsWith("[DONE]")) done = true;
      else if (event.event === "error") out.push(errorPayload(event.data));
      else out.push(event.data);
    },
    onError: (error) => {
      if (error.type === "max-buffer-size-exceeded") tooLarge = true;
    },
    maxBufferSize: maxEventChars,
  });
  return {
    feed(text, target) {
      out = target;
      parser.feed(text);
      if (tooLarge) throw new SseEventTooLargeError(maxEventChars);
    },
    end(target) {
      if (done) return;
      const tail: string[] = [];
      out = tail;
      parser.feed("\n\n");
      // Only a whole event: a clean end inside one (a proxy closing early) stays a cut, continued as before.
      for (const data of tail) if (isJson(data)) target.push(data);
    },
    get done() {
      return done;
    },
  };
}

function isJson(data: string): boolean {
  try {
    JSON.parse(data);
    return true;
  } catch {
    return false;
  }
}

/**
 * The data of an `event: error` event as a payload {@link parseChunk} throws
 * as the provider's error. Servers that name the event put the error object
 * itself in the data, or plain text, rarely OpenAI's `{"error": {...}}`;
 * read as a chunk it had no choices and was silently skipped, and the turn
 * waited for the idle timeout.
 */
function errorPayload(data: string): string {
  let body: unknown;
  try {
    body = JSON.parse(data);
  } catch {
    body = data;
  }
  if (body && typeof body === "object" && Reflect.get(body, "error")) return data;
  return JSON.stringify({ error: body && typeof body === "object" ? body : { message: String(body) } });
}

/** A web body's reads; leaving early cancels the body, which closes the provider's response. */
async function* webReads(body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  let finished = false;
  try {
    for (;;) {
      const read = await reader.read();
      if (read.done) break;
      yield read.value;
    }
    finished = true;
  } finally {
    if (!finished) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

/**
 * What a 200 answer with a JSON body instead of an event stream means:
 * servers that ignore `stream: true` send the whole completion, and some
 * proxies report errors with status 200. Read as an event stream either
 * had no events, so it looked like a cut and was asked again until the
 * resumes ran out. An `error` object is returned as an APIError without
 * status (classified, and retried, like an error in the stream). A whole
 * completion (`choices[].message`) is the provider's answer, so it is
 * taken, as one event of one chunk ({@link completionAsStream}): failing
 * the run threw away an answer that was whole and billed. Any other JSON
 * is a {@link NotStreamedError}. The response to read is returned
 * otherwise: this one, or, for an event stream mislabelled as JSON, its
 * body read whole (a server bug: it still works, without streaming). The
 * body is one answer, so it is bounded as one event is: past
 * `maxEventChars` bytes it is a {@link SseEventTooLargeError}, and the
 * rest is never read.
 */
export async function streamedAnswer(response: Response, maxEventChars: number): Promise<Response | Error> {
  const type = response.headers.get("content-type") ?? "";
  if (!/\bjson\b/i.test(type)) return response;
  const text = await boundedText(response, maxEventChars);
  if (text instanceof Error) return text;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return new Response(text, { headers: response.headers });
  }
  const error: unknown = body && typeof body === "object" ? Reflect.get(body, "error") : undefined;
  if (error && typeof error === "object") return new APIError(undefined, error, undefined, response.headers);
  const stream = completionAsStream(body);
  if (stream === undefined) return new NotStreamedError(type);
  const headers = new Headers(response.headers);
  headers.set("content-type", "text/event-stream");
  return new Response(stream, { headers });
}

/** The body as text, or the bound's error once it passes `maxBytes` (the body is cancelled then). */
async function boundedText(response: Response, maxBytes: number): Promise<string | SseEventTooLargeError> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text + decoder.decode();
    bytes += value.byteLength;
    if (bytes > maxBytes) {
      await reader.cancel().catch(() => undefined);
      return new SseEventTooLargeError(maxBytes, `a JSON answer over ${maxBytes} bytes`);
    }
    text += decoder.decode(value, { stream: true });
  }
}

/**
 * A non-streamed chat completion as the event stream that would have
 * carried it: one chunk whose delta is choice 0's message (its tool calls
 * numbered by position, as a stream numbers them), with its finish reason
 * and usage, then `[DONE]`. Undefined when the body is not a completion.
 */
function completionAsStream(body: unknown): string | undefined {
  const choices: unknown = body && typeof body === "object" ? Reflect.get(body, "choices") : undefined;
  if (!Array.isArray(choices)) return undefined;
  const choice: unknown = choices.find(
    (candidate: unknown) => !(candidate && typeof candidate === "object" && Reflect.get(candidate, "index")),
  );
  const message: unknown = choice && typeof choice === "object" ? Reflect.get(choice, "message") : undefined;
  if (!message || typeof message !== "object") return undefined;
  const calls: unknown = Reflect.get(message, "tool_calls");
  const delta = {
    ...message,
    ...(Array.isArray(calls)
      ? { tool_calls: calls.map((call: unknown, index) => ({ index, ...(call && typeof call === "object" ? call : {}) })) }
      : {}),
  };
  const chunk = {
    model: Reflect.get(body as object, "model"),
    choices: [{ index: 0, delta, finish_reason: Reflect.get(choice as object, "finish_reason") ?? "stop" }],
    usage: Reflect.get(body as object, "usage") ?? null,
  };
  return `data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`;
}

/** The provider answered a streamed request with a JSON body: it does not stream (see {@link streamedAnswer}). */
export class NotStreamedError extends Error {
  override readonly name = "NotStreamedError";
  constructor(contentType: string) {
    super(`the provider answered with ${contentType.split(";")[0]?.trim()} instead of an event stream; it must support stream: true`);
  }
}

/**
 * The provider sent one SSE event longer than the bound: nothing the turn
 * could keep needs that much (the answer and tool-argument caps are far
 * below it), and buffering it would let a provider grow memory without end.
 */
export class SseEventTooLargeError extends Error {
  override readonly name = "SseEventTooLargeError";
  constructor(
    readonly maxEventChars: number,
    what = `an SSE event over ${maxEventChars} characters`,
  ) {
    super(`the provider sent ${what}`);
  }
}

/**
 * The longest SSE event a turn accepts: room for everything its caps allow
 * in one event, JSON-escaped (at most 6 characters a byte), plus 1 Mi
 * characters for the chunk's other fields.
 */
export function maxSseEventChars(bounds: { maxAnswerBytes: number; maxToolArgumentsBytes: number }): number {
  return 6 * (bounds.maxAnswerBytes + bounds.maxToolArgumentsBytes) + 1024 * 1024;
}

/**
 * One SSE payload as a chunk. A payload carrying an `error` object is the
 * provider reporting a failure mid-stream: thrown as an APIError without
 * status, as the SDK's iterator does, so it is classified like one. A
 * payload that is not a JSON object throws {@link MalformedChunkError}.
 */
export function parseChunk(data: string, headers: Headers): ChatCompletionChunk {
  let parsed: ChatCompletionChunk & { error?: object };
  try {
    parsed = JSON.parse(data) as ChatCompletionChunk & { error?: object };
  } catch (error) {
    throw new MalformedChunkError(error);
  }
  if (typeof parsed !== "object" || parsed === null) throw new MalformedChunkError(undefined);
  if (parsed.error) throw new APIError(undefined, parsed.error, undefined, headers);
  return parsed;
}

/**
 * The provider sent a stream event whose data is not a chunk (JSON cut
 * short, or not an object): the provider's fault, not the runtime's, so the
 * turn fails with a provider reason rather than INTERNAL. The payload is
 * not in the message (it is model output); the JSON error is the cause.
 */
export class MalformedChunkError extends Error {
  override readonly name = "MalformedChunkError";
  constructor(cause: unknown) {
    super("the provider sent a stream event that is not a chat-completion chunk (not a JSON object)", { cause });
  }
}
