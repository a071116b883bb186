import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { GetWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { ReadTranscriptRequestSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { type Harness, startHarness } from "../support/harness.js";
import { DATA, END_HEADERS, END_STREAM, grpcFrame, HEADERS, RST_STREAM } from "../support/raw-http2.js";
import { RawHttp2Client } from "../support/raw-http2-client.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * How unary responses end on the wire, read frame by frame from a raw
 * HTTP/2 client that controls the connection's flow-control window. The
 * server closes a gRPC response's stream right after Node submits its
 * trailers, to flush them in that turn (server.ts, closeEndedStream); a
 * gRPC response's trailers (a HEADERS frame, not flow-controlled) must go
 * out at once, with no RST_STREAM after them. A response without trailer
 * fields (Connect, gRPC-Web) ends with a DATA frame carrying END_STREAM,
 * which flow control can hold: it must come in the flush of its message
 * (Node's compatibility response sent it a loop turn later), and must never
 * be replaced by RST_STREAM (Go's HTTP/2 client reports that as an error),
 * even while another stream takes the window; the NO_ERROR reset that frees
 * an unread request may only follow it.
 */

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
          // END_STREAM now comes on the message's own DATA frame (it was an empty DATA frame of its own, a turn later).
          expect(client.framesOf(id).at(-1)).toEqual(expect.objectContaining({ type: DATA, flags: END_STREAM }));
          expect(client.dataBytes(id)).toBe(client.dataBytes(small[0] as number));
        }
        expect(client.dataBytes(small[0] as number)).toBeGreaterThan(0);
      } finally {
        client.close();
      }
    }
  });

  it("without trailer fields (Connect, gRPC-Web) ends with END_STREAM in the flush of its message, not a loop turn later", async () => {
    // Every turn of the loop starts with 100 ms of timer work; frames flushed a turn apart arrive ~100 ms apart.
    const turnMs = 100;
    const busyTurns = setInterval(() => {
      const until = performance.now() + turnMs;
      while (performance.now() < until) {
        // busy
      }
    }, 0);
    // A transcript page of ~30 KB: a body over Node's 16 KiB write buffer, which waits for "drain".
    const clients = harness.connect("grpc");
    const { worker } = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
    for await (const message of clients.interaction.streamInput({ worker: worker!.ref!, input: { text: "z".repeat(30_000) } }))
      void message;
    const client = await RawHttp2Client.connect(port);
    client.openWindow(16 * 1024 * 1024);
    try {
      const connect = { "content-type": "application/proto", "connect-protocol-version": "1" };
      const get = Buffer.from(toBinary(GetWorkerRequestSchema, create(GetWorkerRequestSchema, { worker: ref })));
      const read = Buffer.from(
        toBinary(ReadTranscriptRequestSchema, create(ReadTranscriptRequestSchema, { worker: worker!.ref!, limit: 10 })),
      );
      const kinds: [string, string, Record<string, string>, Buffer][] = [
        ["connect", GET_WORKER, connect, get],
        ["grpc-web", GET_WORKER, { "content-type": "application/grpc-web+proto" }, grpcFrame(get)],
        ["connect, 30 KB", READ_TRANSCRIPT, connect, read],
      ];
      for (const [kind, path, headers, body] of kinds) {
        for (let call = 0; call < 3; call++) {
          const id = client.open(path, headers, body, true);
          await client.until(() => client.ended(id));
          const last = client.framesOf(id).at(-1);
          expect(last, kind).toEqual(expect.objectContaining({ type: DATA, flags: END_STREAM }));
          // On the message's own last DATA frame, not an empty one after it.
          expect(last?.length, kind).toBeGreaterThan(0);
          expect(
            client.framesOf(id).some((f) => f.type === RST_STREAM),
            kind,
          ).toBe(false);
          if (path === READ_TRANSCRIPT) expect(client.dataBytes(id)).toBeGreaterThan(30_000);
          // The response's HEADERS frame is the stream's first; its END_STREAM must not wait for another turn.
          expect(client.readTime(id, -1) - client.readTime(id, 0), kind).toBeLessThan(turnMs / 2);
        }
      }
    } finally {
      clearInterval(busyTurns);
      client.close();
    }
  });

  it("refusing an unread request, sends END_STREAM before the NO_ERROR reset, even while another stream takes the window", async () => {
    const clients = harness.connect("grpc");
    const { worker } = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
    for await (const message of clients.interaction.streamInput({ worker: worker!.ref!, input: { text: "y".repeat(80_000) } }))
      void message;
    const read = grpcFrame(toBinary(ReadTranscriptRequestSchema, create(ReadTranscriptRequestSchema, { worker: worker!.ref!, limit: 10 })));
    // Requests far over the message limit, refused from their length prefix (gRPC-Web) or content-length
    // (Connect) while the client is still sending: the server reads no more of them.
    const declared = 64 * 1024 * 1024;
    const refusals: [string, Record<string, string>, Buffer][] = [
      ["grpc-web", { "content-type": "application/grpc-web+proto" }, grpcFrame(Buffer.alloc(100, 0x61), 0, declared)],
      [
        "connect",
        { "content-type": "application/proto", "connect-protocol-version": "1", "content-length": String(declared) },
        Buffer.alloc(100, 0x61),
      ],
    ];
    for (let round = 0; round < 3; round++) {
      const client = await RawHttp2Client.connect(port);
      try {
        const bulk = client.post(READ_TRANSCRIPT, "application/grpc", read);
        const refused = refusals.flatMap(([, headers, body]) => [0, 1, 2].map(() => client.open(GET_WORKER, headers, body, false)));
        const trickle = setInterval(() => client.openWindow(100), 10);
        await client.until(() => refused.every((id) => client.ended(id)), 3_000).catch(() => undefined);
        clearInterval(trickle);
        client.openWindow(1 << 20);
        await client.until(() => [bulk, ...refused].every((id) => client.ended(id)));
        // The reset that frees the session still comes, once the response has ended.
        await client.until(() => refused.every((id) => client.resetCode(id) !== undefined));
        for (const id of refused) {
          const frames = client.framesOf(id);
          const endStream = frames.findIndex((f) => f.type === DATA && f.flags & END_STREAM);
          const reset = frames.findIndex((f) => f.type === RST_STREAM);
          expect(endStream, `stream ${id}: ${JSON.stringify(frames)}`).toBeGreaterThan(0);
          expect(reset, `stream ${id}: ${JSON.stringify(frames)}`).toBeGreaterThan(endStream);
          expect(client.resetCode(id)).toBe(0);
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
