import type { Readable } from "node:stream";

/** Payload characters read ahead of the consumer before the body is paused (the socket then holds the rest). */
export const READ_AHEAD_CHARS = 256 * 1024;

/** Parses body text into SSE data payloads (see sse-events.ts). */
export interface SsePayloadParser {
  /** Parses more of the body; the payloads it completes go to `out`. Throws when an event is too large. */
  feed(text: string, out: string[]): void;
}

/**
 * A provider's Node body read as batches of SSE data payloads, pushed from
 * its `data` events: each read is decoded and parsed as it arrives, and
 * what is ready waits here until the consumer asks. A paced stream then
 * costs one promise per read (the consumer's wait), where pulling through
 * the body's async iterator cost several (its generator, fetch's error
 * mapping, the SSE generator's yield). Payloads that arrive while the
 * consumer is busy are handed over together, as one batch; past
 * {@link READ_AHEAD_CHARS} the body is paused, so a provider that sends
 * faster than the run consumes is held back by TCP, not buffered here.
 *
 * Errors are the body's, mapped as fetch maps them (`mapError`), and come
 * after the payloads read before them. `return` (the consumer leaving
 * early) destroys the body, which closes the provider's connection.
 */
export class SseBodyReader implements AsyncIterableIterator<string[]> {
  private ready: string[] = [];
  private readyChars = 0;
  private ended = false;
  private failure: unknown;
  private waiter: { resolve: (result: IteratorResult<string[]>) => void; reject: (error: unknown) => void } | undefined;
  private readonly decoder = new TextDecoder();
  private readonly onData = (chunk: Buffer): void => this.read(chunk);
  private readonly onEnd = (): void => this.finish(undefined);
  private readonly onError = (error: unknown): void => this.finish(error);
  /** Closed before its end and without an error of its own: the body was cut short. */
  private readonly onClose = (): void => this.finish(this.body.readableEnded ? undefined : new Error("the body closed before its end"));

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

  next(): Promise<IteratorResult<string[]>> {
    if (this.ready.length > 0) return Promise.resolve({ done: false, value: this.take() });
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** The consumer left early: the body is destroyed, which closes the provider's connection. */
  return(): Promise<IteratorResult<string[]>> {
    this.detach();
    this.ended = true;
    this.ready = [];
    this.body.destroy();
    return Promise.resolve({ done: true, value: undefined });
  }

  private read(chunk: Buffer): void {
    const before = this.ready.length;
    try {
      this.parser.feed(this.decoder.decode(chunk, { stream: true }), this.ready);
    } catch (error) {
      // An event over the bound: nothing after it is read.
      this.body.destroy();
      this.finish(error, false);
      return;
    }
    for (let i = before; i < this.ready.length; i++) this.readyChars += (this.ready[i] as string).length;
    if (this.ready.length === 0) return;
    if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter.resolve({ done: false, value: this.take() });
    } else if (this.readyChars >= READ_AHEAD_CHARS) {
      this.body.pause();
    }
  }

  private take(): string[] {
    const batch = this.ready;
    this.ready = [];
    this.readyChars = 0;
    if (this.body.isPaused() && !this.ended) this.body.resume();
    return batch;
  }

  /** The body ended (`error` undefined) or failed; a waiting consumer is told at once, after any ready payloads. */
  private finish(error: unknown, mapped = true): void {
    if (this.ended || this.failure !== undefined) return;
    this.detach();
    if (error === undefined) this.ended = true;
    else this.failure = mapped ? this.mapError(error) : error;
    const waiter = this.waiter;
    if (!waiter) return;
    this.waiter = undefined;
    // A waiting consumer has taken everything ready, so only the end or the failure is left.
    if (this.failure !== undefined) waiter.reject(this.failure);
    else waiter.resolve({ done: true, value: undefined });
  }

  private detach(): void {
    this.body.off("data", this.onData);
    this.body.off("end", this.onEnd);
    this.body.off("error", this.onError);
    this.body.off("close", this.onClose);
  }
}
