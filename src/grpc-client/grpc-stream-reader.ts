import type { Message } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Compression, Serialization } from "@connectrpc/connect/protocol";
import { validateTrailer } from "@connectrpc/connect/protocol-grpc";
import { constants, type ClientHttp2Stream, type IncomingHttpHeaders, type IncomingHttpStatusHeader } from "node:http2";
import { GrpcFrameQueue } from "./grpc-frame-queue.js";
import { connectErrorFromNodeReason, connectErrorFromResetCode, hasNodeErrorCode } from "./node-errors.js";

/** Response bytes read ahead of the consumer before the HTTP/2 stream is paused (flow control then holds the server back). */
export const READ_AHEAD_BYTES = 256 * 1024;

/** The response's header block, as Node gives it. */
export type ResponseHeaders = IncomingHttpHeaders & IncomingHttpStatusHeader;

/** What the reader tells the session about (connect-node's Http2SessionManager: idle and keepalive bookkeeping). */
export interface ResponseByteListener {
  notifyResponseByteRead(stream: ClientHttp2Stream): void;
}

type Waiter<T> = { resolve: (value: T) => void; reject: (error: unknown) => void };

const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

/**
 * The messages of one server-streaming gRPC response, read from the HTTP/2
 * stream's `data` events rather than through connect's pipeline (the
 * stream's async iterator, then split, decompress and parse stages, each
 * an async generator, plus the sentinel races: the largest cost of a
 * watcher per message in the issue-9 profile).
 *
 * A paced stream costs one promise per message: the consumer's wait,
 * resolved from the `data` event with the message it completes. During a
 * burst, chunks are only queued and each `next()` decodes one message, so
 * decoding happens as the consumer goes. Past {@link READ_AHEAD_BYTES}
 * queued the stream is paused, so HTTP/2 flow control holds the server.
 *
 * Failures follow connect-node's client: a stream error, a reset from the
 * peer, a stream closed before its end, or the call's signal (the caller's
 * abort, the deadline, or connect's `runStreamingCall` after an error)
 * fail the call at once, dropping what is queued, and close the stream
 * with RST_STREAM CANCEL (for Canceled) or INTERNAL_ERROR. At the end the
 * status is taken from the trailers with connect's own `validateTrailer`.
 */
export class GrpcStreamReader<O extends Message> implements AsyncIterableIterator<O> {
  /** The response trailers, filled when they arrive (the object interceptors see). */
  readonly trailer = new Headers();
  /** The response's header block; rejects if the call fails before it arrives. */
  readonly response: Promise<ResponseHeaders>;
  private readonly frames: GrpcFrameQueue;
  private header = new Headers();
  private compression: Compression | null = null;
  private trailerHasStatus = true;
  private ended = false;
  private closed = false;
  private finished = false;
  private failure: ConnectError | undefined;
  private waiter: Waiter<IteratorResult<O> | Promise<IteratorResult<O>>> | undefined;
  private responseWaiter: Waiter<ResponseHeaders> | undefined;
  private readonly onResponse = (headers: ResponseHeaders): void => {
    this.responseWaiter?.resolve(headers);
    this.responseWaiter = undefined;
  };
  private readonly onTrailers = (headers: IncomingHttpHeaders): void => copyNodeHeaders(headers, this.trailer);
  private readonly onData = (chunk: Buffer): void => this.read(chunk);
  private readonly onEnd = (): void => {
    this.ended = true;
  };
  private readonly onError = (error: unknown): void => {
    // The server answered and ended while the request was still being written: its answer wins (as in connect).
    if (this.stream.writableEnded && hasNodeErrorCode(error, "ERR_STREAM_WRITE_AFTER_END")) return;
    this.fail(connectErrorFromNodeReason(error));
  };
  /**
   * The body is complete only when the stream closes without a reset: a
   * lost connection ends the body and then closes the stream with CANCEL,
   * which connect-node reports as such (Canceled), not as a missing status.
   */
  private readonly onClose = (): void => {
    const reset = connectErrorFromResetCode(this.stream.rstCode ?? 0);
    if (reset !== undefined || !this.ended) this.fail(reset ?? prematureClose());
    else {
      this.closed = true;
      this.wake();
    }
  };
  private readonly onAbort = (): void => {
    const reason: unknown = this.signal.reason;
    this.fail(reason instanceof ConnectError ? reason : connectErrorFromNodeReason(reason));
  };

  /**
   * Listens to the stream at once (before the response arrives), so nothing
   * it emits is missed. `output` is connect's serialization of the method's
   * output (binaryOptions, readMaxBytes); `signal` is the call's.
   */
  constructor(
    private readonly stream: ClientHttp2Stream,
    private readonly signal: AbortSignal,
    private readonly session: ResponseByteListener,
    private readonly output: Serialization<O>,
    private readonly readMaxBytes: number,
  ) {
    this.frames = new GrpcFrameQueue(readMaxBytes);
    this.response = new Promise((resolve, reject) => {
      this.responseWaiter = { resolve, reject };
    });
    this.response.catch(() => undefined);
    stream.once("response", this.onResponse);
    stream.on("trailers", this.onTrailers);
    stream.on("data", this.onData);
    stream.once("end", this.onEnd);
    // Kept after detach too: an unheard 'error' would be thrown.
    stream.on("error", this.onError);
    stream.once("close", this.onClose);
    signal.addEventListener("abort", this.onAbort);
    if (signal.aborted) this.onAbort();
  }

  /**
   * What the validated response header says: the header (for the trailer
   * check), the negotiated response compression, and whether the status
   * came in it (a trailers-only response, so no trailer is expected).
   */
  accept(header: Headers, compression: Compression | null, statusInHeader: boolean): void {
    this.header = header;
    this.compression = compression;
    this.trailerHasStatus = !statusInHeader;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<O>> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.finished) return Promise.resolve(DONE);
    try {
      const result = this.produce();
      if (result !== undefined) return Promise.resolve(result);
    } catch (error) {
      return Promise.reject(this.fail(ConnectError.from(error)));
    }
    // More bytes are needed: a stream paused past the read-ahead bound (one long message) must flow again.
    if (this.stream.isPaused()) this.stream.resume();
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** The consumer stopped reading: the stream is cancelled (RST_STREAM CANCEL). */
  return(): Promise<IteratorResult<O>> {
    if (!this.finished && this.failure === undefined) {
      this.finished = true;
      this.detach();
      this.frames.clear();
      if (!this.stream.closed && !this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL);
    }
    return Promise.resolve(DONE);
  }

  private read(chunk: Buffer): void {
    this.frames.push(chunk);
    this.session.notifyResponseByteRead(this.stream);
    if (this.waiter) this.wake();
    else if (this.frames.bytes >= READ_AHEAD_BYTES) this.stream.pause();
  }

  /** A waiting consumer gets the message (or the end) that the bytes now queued complete. */
  private wake(): void {
    const waiter = this.waiter;
    if (!waiter) return;
    try {
      const result = this.produce();
      if (result === undefined) return;
      this.waiter = undefined;
      waiter.resolve(result);
    } catch (error) {
      this.waiter = undefined;
      waiter.reject(this.fail(ConnectError.from(error)));
    }
  }

  /** The next message, or the end once the body ended; undefined while more bytes are needed. */
  private produce(): IteratorResult<O> | Promise<IteratorResult<O>> | undefined {
    const data = this.frames.take();
    if (this.stream.isPaused() && this.frames.bytes < READ_AHEAD_BYTES && !this.ended) this.stream.resume();
    if (data !== undefined) return this.decode(data, this.frames.flags);
    if (this.closed) return this.end();
    return undefined;
  }

  private decode(data: Uint8Array, flags: number): IteratorResult<O> | Promise<IteratorResult<O>> {
    if ((flags & COMPRESSED_FLAG) === 0) return { done: false, value: this.output.parse(data) };
    const compression = this.compression;
    if (!compression) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
    return compression.decompress(data, this.readMaxBytes).then(
      (data) => ({ done: false, value: this.output.parse(data) }),
      (error: unknown) => Promise.reject(this.fail(ConnectError.from(error))),
    );
  }

  /** The body ended and every message was read: a partial frame or an error status fails the call (connect's checks). */
  private end(): IteratorResult<O> {
    if (this.frames.bytes > 0) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    if (this.trailerHasStatus) validateTrailer(this.trailer, this.header);
    this.finished = true;
    this.detach();
    return DONE;
  }

  /** Fails the call once (the first failure wins) and closes the stream; returns the failure. */
  private fail(error: ConnectError): ConnectError {
    if (this.failure !== undefined) return this.failure;
    if (this.finished) return error;
    this.failure = error;
    this.detach();
    this.frames.clear();
    if (!this.stream.closed && !this.stream.destroyed) {
      this.stream.close(error.code === Code.Canceled ? constants.NGHTTP2_CANCEL : constants.NGHTTP2_INTERNAL_ERROR);
    }
    this.responseWaiter?.reject(error);
    this.responseWaiter = undefined;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(error);
    return error;
  }

  private detach(): void {
    this.stream.off("response", this.onResponse);
    this.stream.off("trailers", this.onTrailers);
    this.stream.off("data", this.onData);
    this.stream.off("end", this.onEnd);
    this.stream.off("close", this.onClose);
    this.signal.removeEventListener("abort", this.onAbort);
  }
}

const COMPRESSED_FLAG = 0b01;

/** A stream closed before its end without a reset code (what Node's own stream iterator reports). */
function prematureClose(): ConnectError {
  return new ConnectError("Premature close", Code.Unknown);
}

/** Node header values into web Headers, pseudo-headers left out (as connect-node does). */
export function copyNodeHeaders(from: IncomingHttpHeaders, to: Headers): void {
  for (const [key, value] of Object.entries(from)) {
    if (key.startsWith(":") || value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) to.append(key, item);
    else to.append(key, String(value));
  }
}
