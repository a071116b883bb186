import { create, toBinary } from "@bufbuild/protobuf";
import { createMethodSerializationLookup, encodeEnvelope } from "@connectrpc/connect/protocol";
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchWorkerRequestSchema, WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { GrpcStreamReader } from "../../src/grpc-client/grpc-stream-reader.js";
import { CALL_ID_HEADER, SCENARIO_HEADER, startScenarioServer, type ScenarioServer } from "./scenario-server.js";

/**
 * `return()` is the reader's own (connect's call wrapper and generated
 * clients drop it), so it is tested on the reader: a consumer that stops
 * reading cancels the HTTP/2 stream, and the server's handler sees it.
 */
describe("GrpcStreamReader", () => {
  let server: ScenarioServer;
  beforeAll(async () => {
    server = await startScenarioServer();
  });
  afterAll(async () => {
    await server.close();
  });

  it("cancels the stream (RST_STREAM CANCEL) when the consumer returns early", async () => {
    const session = http2.connect(server.baseUrl);
    try {
      const method = WorkerObservation.method.watchWorker;
      const stream = session.request({
        ":method": "POST",
        ":path": "/worker_runtime.v1.WorkerObservation/WatchWorker",
        "content-type": "application/grpc+proto",
        te: "trailers",
        [SCENARIO_HEADER]: "slow",
        [CALL_ID_HEADER]: "reader-return",
      });
      const output = createMethodSerializationLookup(method, undefined, undefined, { readMaxBytes: 1 << 20, writeMaxBytes: 1 << 20 }).getO(
        true,
      );
      const reader = new GrpcStreamReader(
        stream,
        new AbortController().signal,
        { notifyResponseByteRead: () => undefined },
        output,
        1 << 20,
      );
      stream.end(encodeEnvelope(0, toBinary(WatchWorkerRequestSchema, create(WatchWorkerRequestSchema, {}))));
      expect((await reader.response)[":status"]).toBe(200);
      reader.accept(new Headers(), null, false);
      const first = await reader.next();
      expect(first.done === false && first.value.heartbeat?.cursor).toBe("first");
      expect(await reader.return()).toEqual({ done: true, value: undefined });
      await server.handlerAborted("reader-return");
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
      expect((await reader.next()).done).toBe(true);
    } finally {
      session.destroy();
    }
  });
});
