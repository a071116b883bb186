import { Code, ConnectError } from "@connectrpc/connect";

/** The 5 bytes before each gRPC message: a flags byte and the message length (big-endian uint32). */
export const GRPC_FRAME_HEADER_BYTES = 5;

/**
 * The bytes of an HTTP/2 response body, as they arrive, split into gRPC
 * frames. A frame inside one DATA chunk (the usual case) is a view of that
 * chunk, not a copy, and taking it allocates nothing else (the first
 * chunk's read position is an offset, not a new Buffer view per frame); a
 * frame split across chunks is copied once into its own buffer.
 */
export class GrpcFrameQueue {
  private chunks: Buffer[] = [];
  /** Bytes of the first chunk already taken. */
  private head = 0;
  private queued = 0;
  /** The flags byte of the frame {@link take} returned last: 1 means compressed. */
  flags = 0;

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

  /** The next whole frame's message bytes (its flags in {@link flags}), or undefined until more bytes arrive. */
  take(): Uint8Array | undefined {
    if (this.queued < GRPC_FRAME_HEADER_BYTES) return undefined;
    const first = this.chunks[0] as Buffer;
    const head = this.head;
    const inFirst = first.length - head >= GRPC_FRAME_HEADER_BYTES;
    const header = inFirst ? first : this.copyHeader();
    const at = inFirst ? head : 0;
    const length = header.readUInt32BE(at + 1);
    if (length > this.readMaxBytes) {
      // The same words as connect's assertReadMaxBytes.
      throw new ConnectError(`message size ${length} is larger than configured readMaxBytes ${this.readMaxBytes}`, Code.ResourceExhausted);
    }
    const size = GRPC_FRAME_HEADER_BYTES + length;
    if (this.queued < size) return undefined;
    this.flags = header[at] as number;
    this.queued -= size;
    if (first.length - head >= size) {
      // A plain Uint8Array view (not a Buffer), so bytes fields decode to what connect's reader gives.
      const data = new Uint8Array(first.buffer, first.byteOffset + head + GRPC_FRAME_HEADER_BYTES, length);
      this.advance(first, size);
      return data;
    }
    return this.copyOut(size);
  }

  /** Drops everything queued (the call failed or was cancelled). */
  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.queued = 0;
  }

  /** The first 5 queued bytes when they straddle chunks, copied. */
  private copyHeader(): Buffer {
    const out = Buffer.allocUnsafe(GRPC_FRAME_HEADER_BYTES);
    let offset = 0;
    let start = this.head;
    for (const chunk of this.chunks) {
      offset += chunk.copy(out, offset, start, Math.min(chunk.length, start + GRPC_FRAME_HEADER_BYTES - offset));
      start = 0;
      if (offset === GRPC_FRAME_HEADER_BYTES) break;
    }
    return out;
  }

  /** Takes `size` bytes (a frame spanning chunks) and returns the message after its header, copied into its own buffer. */
  private copyOut(size: number): Uint8Array {
    const out = new Uint8Array(size - GRPC_FRAME_HEADER_BYTES);
    let skip = GRPC_FRAME_HEADER_BYTES;
    let offset = 0;
    let left = size;
    while (left > 0) {
      const chunk = this.chunks[0] as Buffer;
      const part = Math.min(chunk.length - this.head, left);
      const from = this.head + Math.min(skip, part);
      const to = this.head + part;
      out.set(chunk.subarray(from, to), offset);
      offset += to - from;
      skip -= Math.min(skip, part);
      left -= part;
      this.advance(chunk, part);
    }
    return out;
  }

  /** Moves the read position `size` bytes into the first chunk, dropping it once read. */
  private advance(first: Buffer, size: number): void {
    this.head += size;
    if (this.head === first.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
