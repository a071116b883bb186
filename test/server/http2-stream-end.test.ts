import { create, toBinary } from "@bufbuild/protobuf";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { GetWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { ReadTranscriptRequestSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { type Harness, startHarness } from "../support/harness.js";
import {
  ACK,
  CLIENT_PREFACE,
  DATA,
  END_HEADERS,
  END_STREAM,
  grpcFrame,
  HEADERS,
  http2Frame,
  literalHeaders,
  PING,
  RST_STREAM,
  SETTINGS,
  WINDOW_UPDATE,
} from "../support/raw-http2.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * How unary responses end on the wire, read frame by frame from a raw
 * HTTP/2 client that controls the connection's flow-control window. The
 * server closes a gRPC response's stream right after Node submits its
 * trailers, to flush them in that turn (server.ts, closeEndedStream). A
 * response without trailer fields (the Connect protocol) ends with an empty
 * DATA frame instead, which flow control can hold: closing it then sent
 * RST_STREAM in place of END_STREAM (Go's HTTP/2 client reports that as an
 * error), so such responses must end with END_STREAM even while another
 * stream takes the window; a gRPC response's trailers (a HEADERS frame,
 * not flow-controlled) must go out at once, with no RST_STREAM after them.
 */

/** RFC 9113 §6.9.2: a new connection's send window. */
const INITIAL_CONNECTION_WINDOW = 65_535;

interface Frame {
  type: number;
  flags: number;
  length: number;
}

/** A minimal HTTP/2 client: no HPACK decoding, the connection window never opened unless asked. */
class RawHttp2Client {
  /** What the server may still send on the connection (DATA payloads count against it). */
  window = INITIAL_CONNECTION_WINDOW;
  private readonly streams = new Map<number, Frame[]>();
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
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    this.streams.set(id, []);
    const block = literalHeaders({
      ":method": "POST",
      ":scheme": "http",
      ":path": path,
      ":authority": "127.0.0.1",
      "content-type": contentType,
      te: "trailers",
    });
    this.socket.write(Buffer.concat([http2Frame(HEADERS, END_HEADERS, id, block), http2Frame(DATA, END_STREAM, id, body)]));
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

  ended(id: number): boolean {
    return this.framesOf(id).some((f) => f.type === RST_STREAM || ((f.type === DATA || f.type === HEADERS) && f.flags & END_STREAM));
  }

  /** DATA payload bytes the server sent on a stream. */
  dataBytes(id: number): number {
    return this.framesOf(id).reduce((sum, f) => sum + (f.type === DATA ? f.length : 0), 0);
  }

  until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
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
      if (id !== 0) this.streams.get(id)?.push({ type, flags, length });
    }
    for (const check of [...this.changed]) check();
  }
}

const GET_WORKER = "/worker_runtime.v1.WorkerCatalog/GetWorker";
const READ_TRANSCRIPT = "/worker_runtime.v1.WorkerObservation/ReadTranscript";

describe("a unary response's end over HTTP/2", () => {
  let harness: Harness;
  let port: number;
  let ref: WorkerRef;

  beforeAll(async () => {
    harness = await startHarness({ executionBackend: new ScriptedBackend() });
    port = Number(new URL(harness.baseUrl).port);
    const { worker } = await harness.connect("grpc").catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
    ref = worker!.ref!;
  });
  afterAll(async () => {
    await harness.close();
  });

  /**
   * Calls until the connection window is below one response's body, then
   * opens it to exactly that: the next response's body uses it up.
   */
  async function windowForExactlyOneBody(client: RawHttp2Client, call: () => number): Promise<number> {
    const probe = call();
    await client.until(() => client.ended(probe));
    const body = client.dataBytes(probe);
    while (client.window >= body) {
      const ids = Array.from({ length: Math.floor(client.window / body) }, call);
      await client.until(() => ids.every((id) => client.ended(id)));
    }
    client.openWindow(body - client.window);
    return body;
  }

  it("without trailer fields (Connect) ends with END_STREAM, never RST_STREAM, while another stream takes the window", async () => {
    // A worker whose transcript is one message a little over the connection window.
    const clients = harness.connect("grpc");
    const { worker } = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
    for await (const message of clients.interaction.streamInput({ worker: worker!.ref!, input: { text: "x".repeat(80_000) } }))
      void message;
    const read = grpcFrame(toBinary(ReadTranscriptRequestSchema, create(ReadTranscriptRequestSchema, { worker: worker!.ref!, limit: 10 })));
    const get = Buffer.from(toBinary(GetWorkerRequestSchema, create(GetWorkerRequestSchema, { worker: ref })));
    // Each round on a new connection, so the window starts at 64 KiB. The large response takes it,
    // then the window opens 100 bytes at a time: each small response's final (empty) DATA frame now
    // and then finds it taken by another stream, and a close then would send RST_STREAM instead.
    for (let round = 0; round < 3; round++) {
      const client = await RawHttp2Client.connect(port);
      try {
        const bulk = client.post(READ_TRANSCRIPT, "application/grpc", read);
        const small = Array.from({ length: 5 }, () => client.post(GET_WORKER, "application/proto", get));
        const trickle = setInterval(() => client.openWindow(100), 10);
        // How the window is shared is nghttp2's choice (Node 24's gives the large response all
        // of it first): whatever is still open after a while gets the window at once.
        await client.until(() => small.every((id) => client.ended(id)), 3_000).catch(() => undefined);
        clearInterval(trickle);
        client.openWindow(1 << 20);
        await client.until(() => [bulk, ...small].every((id) => client.ended(id)));
        for (const id of small) {
          expect(client.framesOf(id).filter((f) => f.type === RST_STREAM)).toEqual([]);
          expect(client.framesOf(id).at(-1)).toEqual({ type: DATA, flags: END_STREAM, length: 0 });
        }
      } finally {
        client.close();
      }
    }
  });

  it("with trailer fields (gRPC) sends them at once, window or not, and no RST_STREAM", async () => {
    const client = await RawHttp2Client.connect(port);
    try {
      const request = grpcFrame(toBinary(GetWorkerRequestSchema, create(GetWorkerRequestSchema, { worker: ref })));
      const call = (): number => client.post(GET_WORKER, "application/grpc", request);
      const body = await windowForExactlyOneBody(client, call);
      // One byte more than the body: the server can read its body's end (a zero-length read), but
      // send no more DATA. The trailers are a HEADERS frame, which flow control does not hold.
      client.openWindow(1);
      const id = call();
      await client.until(() => client.ended(id));
      expect(client.window).toBe(1);
      expect(client.dataBytes(id)).toBe(body);
      expect(client.framesOf(id).at(-1)).toEqual(expect.objectContaining({ type: HEADERS, flags: END_STREAM | END_HEADERS }));
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(client.framesOf(id).some((f) => f.type === RST_STREAM)).toBe(false);
    } finally {
      client.close();
    }
  });
});
