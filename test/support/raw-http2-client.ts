import net from "node:net";
import {
  ACK,
  CLIENT_PREFACE,
  DATA,
  END_HEADERS,
  END_STREAM,
  HEADERS,
  http2Frame,
  literalHeaders,
  PING,
  RST_STREAM,
  SETTINGS,
  WINDOW_UPDATE,
} from "./raw-http2.js";

/**
 * An HTTP/2 client on a raw socket, for tests that must see each frame and
 * control the connection's flow-control window themselves (Node's client
 * opens it on its own).
 */

/** RFC 9113 §6.9.2: a new connection's send window. */
const INITIAL_CONNECTION_WINDOW = 65_535;

/** A frame as the client saw it (its payload is not kept). */
export interface Frame {
  type: number;
  flags: number;
  length: number;
}

/** A minimal HTTP/2 client: no HPACK decoding, the connection window never opened unless asked. */
export class RawHttp2Client {
  /** What the server may still send on the connection (DATA payloads count against it). */
  window = INITIAL_CONNECTION_WINDOW;
  private readonly streams = new Map<number, Frame[]>();
  /** When each frame of a stream was read (performance.now()), in the order of `streams`. */
  private readonly readAt = new Map<number, number[]>();
  /** The error code of each RST_STREAM frame, by stream. */
  private readonly resetCodes = new Map<number, number>();
  private nextStreamId = 1;
  private pending = Buffer.alloc(0);
  private readonly changed = new Set<() => void>();

  private constructor(private readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => this.read(chunk));
  }

  static connect(port: number): Promise<RawHttp2Client> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        const client = new RawHttp2Client(socket);
        // SETTINGS_INITIAL_WINDOW_SIZE = 16 MiB: only the connection window limits the server.
        const settings = Buffer.alloc(6);
        settings.writeUInt16BE(0x4, 0);
        settings.writeUInt32BE(16 * 1024 * 1024, 2);
        socket.write(Buffer.concat([CLIENT_PREFACE, http2Frame(SETTINGS, 0, 0, settings)]));
        resolve(client);
      });
      socket.once("error", reject);
    });
  }

  /** Sends a unary request; its stream id. */
  post(path: string, contentType: string, body: Buffer): number {
    return this.open(path, { "content-type": contentType, te: "trailers" }, body, true);
  }

  /** Opens a POST stream with `body`, ending the request only if `end` (else the client looks still busy sending); its id. */
  open(path: string, headers: Record<string, string>, body: Buffer, end: boolean): number {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    this.streams.set(id, []);
    this.readAt.set(id, []);
    const block = literalHeaders({ ":method": "POST", ":scheme": "http", ":path": path, ":authority": "127.0.0.1", ...headers });
    this.socket.write(Buffer.concat([http2Frame(HEADERS, END_HEADERS, id, block), http2Frame(DATA, end ? END_STREAM : 0, id, body)]));
    return id;
  }

  openWindow(bytes: number): void {
    const increment = Buffer.alloc(4);
    increment.writeUInt32BE(bytes);
    this.window += bytes;
    this.socket.write(http2Frame(WINDOW_UPDATE, 0, 0, increment));
  }

  framesOf(id: number): Frame[] {
    return this.streams.get(id) ?? [];
  }

  /** When the stream's `index`th frame was read (performance.now()); negative indices count from the end. */
  readTime(id: number, index: number): number {
    return this.readAt.get(id)?.at(index) ?? Number.NaN;
  }

  /** The error code of the stream's RST_STREAM, if one came. */
  resetCode(id: number): number | undefined {
    return this.resetCodes.get(id);
  }

  ended(id: number): boolean {
    return this.framesOf(id).some((f) => f.type === RST_STREAM || ((f.type === DATA || f.type === HEADERS) && f.flags & END_STREAM));
  }

  /** DATA payload bytes the server sent on a stream. */
  dataBytes(id: number): number {
    return this.framesOf(id).reduce((sum, f) => sum + (f.type === DATA ? f.length : 0), 0);
  }

  // Generous: a wait is for the server's work, and a 2-core CI machine at load 12+ once took over 5 s.
  until(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!condition()) return;
        clearTimeout(timer);
        this.changed.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.changed.delete(check);
        reject(new Error("timed out waiting for frames"));
      }, timeoutMs);
      this.changed.add(check);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private read(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 9) {
      const length = this.pending.readUIntBE(0, 3);
      if (this.pending.length < 9 + length) break;
      const type = this.pending[3] ?? 0;
      const flags = this.pending[4] ?? 0;
      const id = this.pending.readUInt32BE(5) & 0x7fffffff;
      const payload = this.pending.subarray(9, 9 + length);
      this.pending = this.pending.subarray(9 + length);
      if (type === SETTINGS && !(flags & ACK)) this.socket.write(http2Frame(SETTINGS, ACK, 0));
      if (type === PING && !(flags & ACK)) this.socket.write(http2Frame(PING, ACK, 0, payload));
      if (type === DATA) this.window -= length;
      if (type === RST_STREAM) this.resetCodes.set(id, payload.readUInt32BE(0));
      if (id !== 0) {
        this.streams.get(id)?.push({ type, flags, length });
        this.readAt.get(id)?.push(performance.now());
      }
    }
    for (const check of [...this.changed]) check();
  }
}
