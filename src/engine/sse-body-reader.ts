import type { Readable } from "node:stream";

/** Body bytes read ahead of the consumer before the body is paused (the socket then holds the rest). */
export const READ_AHEAD_BYTES = 256 * 1024;

/** Bytes parsed at a time when the consumer asks for more: a burst's parsing is spread over its slices. */
export const PARSE_PIECE_BYTES = 16 * 1024;

/**
 * How long a body may go on after `[DONE]` before it is destroyed and the
 * stream taken as ended. The answer is whole at `[DONE]`; the body's end
 * (normally in the same read) is still waited for, so the connection goes
 * back to the pool, but a provider that leaves the response open would
 * otherwise hold the turn until the idle timeout, and the connection for ever.
 */
export const DRAIN_AFTER_DONE_MS = 1_000;

/** Parses body text into SSE data payloads (see sse-events.ts). */
export interface SsePayloadParser {
  /** Parses more of the body; the payloads it completes go to `out`. Throws when an event is too large. */
  feed(text: string, out: string[]): void;
  /**
   * The body ended cleanly: the last event, if no blank line completed it,
   * goes to `out` when its data is whole JSON. Servers that end the body
   * right after their last `data:` line (no blank line, sometimes no
   * newline, often no `[DONE]`) otherwise lost that event, and with it the
   * answer's last text and finish reason: the whole answer was then taken
   * for a cut and asked again.
   */
  end(out: string[]): void;
  /** Whether `[DONE]` was read: the stream's payloads are complete, whatever the body does next. */
  readonly done: boolean;
}

/** A streamed response's batches of SSE data payloads. */
export interface SseBatches extends AsyncIterableIterator<string[]> {
  /**
   * Whether the provider sent `[DONE]`: the answer is whole, even if no
   * chunk carried a finish reason (a body that just ends may have been cut).
   */
  readonly sawDone: boolean;
  /**
   * When the body last brought bytes (`performance.now()`), comments
   * included: what the stream idle timeout measures silence from. A
   * provider's keep-alive comments while a model thinks are not silence.
   */
  readonly lastReadAt: number;
}

/**
 * A provider's Node body read as batches of SSE data payloads, pushed from
 * its `data` events rather than pulled through its async iterator (a
 * generator step and several promises per read, plus fetch's error mapping
 * and the SSE generator's own). A paced stream costs one promise per read:
 * the consumer's wait, resolved from the `data` event with what it parsed.
 *
 * While the consumer is busy (a burst), reads are only queued, and parsed
 * when it asks again, {@link PARSE_PIECE_BYTES} at a time: the parsing of
 * a burst then happens in the consumer's bounded slices (model-turn.ts),
 * not in a row of `data` callbacks of many streams in one turn of the
 * event loop. Past {@link READ_AHEAD_BYTES} queued the body is paused, so
 * a provider that sends faster than the run consumes is held back by TCP.
 *
 * Errors are the body's, mapped as fetch maps them (`mapError`), and come
 * after the payloads read before them; a body closed before its end is a
 * cut too. After `[DONE]` the rest of the body is dropped unparsed and its
 * end is a clean end however it comes (see {@link DRAIN_AFTER_DONE_MS}).
 * `return` (the consumer leaving early) destroys the body, which closes the
 * provider's connection.
 */
export class SseBodyReader implements SseBatches {
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  /** `[DONE]` was read: the rest of the body is dropped, and its end is a clean end however it comes. */
  private complete = false;
  private ended = false;
  /** The parser's end was taken (or the consumer left): see {@link tail}. */
  private tailTaken = false;
  private failure: unknown;
  private waiter: { resolve: (result: IteratorResult<string[]>) => void; reject: (error: unknown) => void } | undefined;
  private readonly decoder = new TextDecoder();
  private readonly onData = (chunk: Buffer): void => this.read(chunk);
  private readonly onEnd = (): void => this.finish(undefined);
  private readonly onError = (error: unknown): void => this.finish(this.mapError(error));
  private readonly onClose = (): void => {
    if (!this.body.readableEnded) this.finish(this.mapError(new Error("the body closed before its end")));
  };

  constructor(
    private readonly body: Readable,
    private readonly parser: SsePayloadParser,
    private readonly mapError: (error: unknown) => unknown,
  ) {
    body.on("data", this.onData);
    body.once("end", this.onEnd);
    body.once("error", this.onError);
    body.once("close", this.onClose);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  get sawDone(): boolean {
    return this.parser.done;
  }

  lastReadAt = performance.now();

  next(): Promise<IteratorResult<string[]>> {
    try {
      const batch = this.parse();
      if (batch.length > 0) return Promise.resolve({ done: false, value: batch });
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.ended) {
      try {
        return Promise.resolve(this.tail());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** The consumer left early: the body is destroyed, which closes the provider's connection. */
  return(): Promise<IteratorResult<string[]>> {
    this.detach();
    this.ended = true;
    this.tailTaken = true;
    this.queued = [];
    this.queuedBytes = 0;
    this.body.destroy();
    return Promise.resolve({ done: true, value: undefined });
  }

  private read(chunk: Buffer): void {
    this.lastReadAt = performance.now();
    if (this.complete) return;
    this.queued.push(chunk);
    this.queuedBytes += chunk.length;
    const waiter = this.waiter;
    if (!waiter) {
      if (this.queuedBytes >= READ_AHEAD_BYTES) this.body.pause();
      return;
    }
    // The consumer is waiting (a paced stream, or the end of a burst): it gets what this read completes.
    let batch: string[];
    try {
      batch = this.parse();
    } catch (error) {
      this.waiter = undefined;
      waiter.reject(error);
      return;
    }
    if (batch.length === 0) return;
    this.waiter = undefined;
    waiter.resolve({ done: false, value: batch });
  }

  /**
   * Parses queued bytes, a piece at a time, until some payloads are complete
   * or nothing is queued. An event over the bound throws, and the body is
   * destroyed: nothing after it is read.
   */
  private parse(): string[] {
    const batch: string[] = [];
    while (batch.length === 0 && this.queued.length > 0) {
      const chunk = this.queued[0] as Buffer;
      const piece = chunk.length > PARSE_PIECE_BYTES ? chunk.subarray(0, PARSE_PIECE_BYTES) : chunk;
      if (piece === chunk) this.queued.shift();
      else this.queued[0] = chunk.subarray(PARSE_PIECE_BYTES);
      this.queuedBytes -= piece.length;
      try {
        this.parser.feed(this.decoder.decode(piece, { stream: true }), batch);
      } catch (error) {
        this.return().catch(() => undefined);
        throw error;
      }
      if (this.parser.done) {
        this.drain();
        return batch;
      }
    }
    if (this.queuedBytes < READ_AHEAD_BYTES && this.body.isPaused() && !this.ended) this.body.resume();
    return batch;
  }

  /** The body ended (`failure` undefined) or failed; a waiting consumer is told at once (nothing is queued then). */
  private finish(failure: unknown): void {
    if (this.ended || this.failure !== undefined) return;
    this.detach();
    if (failure === undefined || this.complete) this.ended = true;
    else this.failure = failure;
    const waiter = this.waiter;
    if (!waiter) return;
    this.waiter = undefined;
    if (!this.ended) waiter.reject(failure);
    else {
      try {
        waiter.resolve(this.tail());
      } catch (error) {
        waiter.reject(error);
      }
    }
  }

  /**
   * What the clean end of the body gives, once: the last event when the
   * body ended without the blank line that completes it (see
   * {@link SsePayloadParser.end}), then the end of the iteration.
   */
  private tail(): IteratorResult<string[]> {
    if (this.tailTaken || this.complete) return { done: true, value: undefined };
    this.tailTaken = true;
    const batch: string[] = [];
    this.parser.feed(this.decoder.decode(), batch);
    this.parser.end(batch);
    return batch.length > 0 ? { done: false, value: batch } : { done: true, value: undefined };
  }

  /**
   * The stream is complete (`[DONE]`): what is queued is dropped, and so is
   * the rest of the body as it comes; its end, or its failure, ends the
   * iteration cleanly, at the latest after {@link DRAIN_AFTER_DONE_MS}.
   */
  private drain(): void {
    this.complete = true;
    this.queued = [];
    this.queuedBytes = 0;
    if (this.ended || this.body.readableEnded || this.body.destroyed) return;
    const timer = setTimeout(() => this.body.destroy(), DRAIN_AFTER_DONE_MS);
    timer.unref();
    this.body.once("close", () => clearTimeout(timer));
    if (this.body.isPaused()) this.body.resume();
  }

  private detach(): void {
    this.body.off("data", this.onData);
    this.body.off("end", this.onEnd);
    this.body.off("error", this.onError);
    this.body.off("close", this.onClose);
  }
}
