import { Code, ConnectError } from "@connectrpc/connect";

/** The 5 bytes before each gRPC message: a flags byte and the message length (big-endian uint32). */
export const GRPC_FRAME_HEADER_BYTES = 5;

/** One gRPC length-prefixed message as received: flag 1 means compressed. */
export interface GrpcFrame {
  flags: number;
  data: Uint8Array;
}

/**
 * The bytes of an HTTP/2 response body, as they arrive, split into gRPC
 * frames. A frame inside one DATA chunk (the usual case) is a view of that
 * chunk, not a copy; a frame split across chunks is copied once into its
 * own buffer.
 */
export class GrpcFrameQueue {
  private chunks: Buffer[] = [];
  private queued = 0;

  /** @param readMaxBytes connect's limit on one message; a longer frame is ResourceExhausted as soon as its header is read. */
  constructor(private readonly readMaxBytes: number) {}

  /** Bytes received and not yet taken as frames. */
  get bytes(): number {
    return this.queued;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.queued += chunk.length;
  }

  /** The next whole frame, or undefined until more bytes arrive. */
  take(): GrpcFrame | undefined {
    if (this.queued < GRPC_FRAME_HEADER_BYTES) return undefined;
    const head = this.peekHeader();
    const length = head.readUInt32BE(1);
    if (length > this.readMaxBytes) {
      // The same words as connect's assertReadMaxBytes.
      throw new ConnectError(`message size ${length} is larger than configured readMaxBytes ${this.readMaxBytes}`, Code.ResourceExhausted);
    }
    if (this.queued < GRPC_FRAME_HEADER_BYTES + length) return undefined;
    const flags = head[0] as number;
    const frame = this.consume(GRPC_FRAME_HEADER_BYTES + length);
    // A plain Uint8Array view (not a Buffer), so bytes fields decode to what connect's reader gives.
    return { flags, data: new Uint8Array(frame.buffer, frame.byteOffset + GRPC_FRAME_HEADER_BYTES, length) };
  }

  /** Drops everything queued (the call failed or was cancelled). */
  clear(): void {
    this.chunks = [];
    this.queued = 0;
  }

  /** The first 5 queued bytes, without consuming them (copied only when they straddle chunks). */
  private peekHeader(): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length >= GRPC_FRAME_HEADER_BYTES) return first;
    const head = Buffer.allocUnsafe(GRPC_FRAME_HEADER_BYTES);
    let offset = 0;
    for (const chunk of this.chunks) {
      offset += chunk.copy(head, offset, 0, Math.min(chunk.length, GRPC_FRAME_HEADER_BYTES - offset));
      if (offset === GRPC_FRAME_HEADER_BYTES) break;
    }
    return head;
  }

  /** Removes and returns the first `size` queued bytes (a view when they are inside the first chunk). */
  private consume(size: number): Buffer {
    this.queued -= size;
    const first = this.chunks[0] as Buffer;
    if (first.length >= size) {
      if (first.length === size) this.chunks.shift();
      else this.chunks[0] = first.subarray(size);
      return first.subarray(0, size);
    }
    const out = Buffer.allocUnsafe(size);
    let offset = 0;
    while (offset < size) {
      const chunk = this.chunks[0] as Buffer;
      const part = Math.min(chunk.length, size - offset);
      chunk.copy(out, offset, 0, part);
      offset += part;
      if (part === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(part);
    }
    return out;
  }
}
