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
 * trailers, to flush them in that turn (server.ts, closeEndedStream). A
 * response without trailer fields (the Connect protocol) ends with an empty
 * DATA frame instead, which flow control can hold: closing it then sent
 * RST_STREAM in place of END_STREAM (Go's HTTP/2 client reports that as an
 * error), so such responses must end with END_STREAM even while another
 * stream takes the window; a gRPC response's trailers (a HEADERS frame,
 * not flow-controlled) must go out at once, with no RST_STREAM after them.
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
