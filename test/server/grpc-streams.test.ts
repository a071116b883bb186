import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { compressionGzip, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { once } from "node:events";
import * as http2 from "node:http2";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { StreamInputRequestSchema, WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WatchWorkerRequestSchema, WatchWorkerResponseSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { startHarness, type Harness } from "../support/harness.js";
import { replyWith, ScriptedBackend } from "../support/scripted-backend.js";
import { grpcFrame } from "../support/raw-http2.js";
import { grpcFrames, rawGrpcRequest } from "../support/raw-grpc.js";

/**
 * Server-streaming calls over binary gRPC are written by the server's own
 * loop (src/server/grpc-stream-writer.ts); the protocol's options must
 * still hold there: compressed requests, and responses compressed when the
 * client accepts it and a message is large (64 KiB and up), plain otherwise.
 */
describe("gRPC server streams", () => {
  let harness: Harness;
  const bigText = "0123456789abcdef".repeat(6 * 1024); // 96 KiB in one delta: one message over 64 KiB

  beforeAll(async () => {
    harness = await startHarness({ executionBackend: new ScriptedBackend(replyWith(bigText, 1)) });
  });
  afterAll(async () => {
    await harness.close();
  });

  it("reads a gzip request and sends a large message gzip-compressed, which the client decodes", async () => {
    const sessionManager = new Http2SessionManager(harness.baseUrl);
    const transport = createGrpcTransport({
      baseUrl: harness.baseUrl,
      sessionManager,
      sendCompression: compressionGzip,
      acceptCompression: [compressionGzip],
      // Every request body is compressed, however small.
      compressMinBytes: 0,
    });
    try {
      const catalog = createClient(WorkerCatalog, transport);
      const interaction = createClient(WorkerInteraction, transport);
      const worker = (await catalog.createWorker({ runtimeId: harness.runtime.runtimeId })).worker?.ref;
      let text = "";
      for await (const message of interaction.streamInput({ worker, input: { text: "go" } })) {
        for (const event of message.events) if (event.kind.case === "textDelta") text += event.kind.value.text;
      }
      expect(text).toBe(bigText);
    } finally {
      sessionManager.abort();
    }
  });

  it("compresses only when the client accepts it, and says so in grpc-encoding", async () => {
    const catalog = createClient(WorkerCatalog, createGrpcTransport({ baseUrl: harness.baseUrl }));
    // A raw HTTP/2 StreamInput, to see each message's compressed flag and the response headers.
    const streamInput = async (acceptEncoding: string | undefined): Promise<{ encoding: string | undefined; flags: number[] }> => {
      const worker = (await catalog.createWorker({ runtimeId: harness.runtime.runtimeId })).worker?.ref;
      const session = http2.connect(harness.baseUrl);
      try {
        const request = toBinary(StreamInputRequestSchema, create(StreamInputRequestSchema, { worker, input: { text: "go" } }));
        const stream = rawGrpcRequest(
          session,
          "/worker_runtime.v1.WorkerInteraction/StreamInput",
          grpcFrame(request),
          accepting(acceptEncoding),
        );
        const [headers] = await once(stream, "response");
        const flags: number[] = [];
        for await (const frame of grpcFrames(stream)) flags.push(frame.flag);
        return { encoding: (headers as http2.IncomingHttpHeaders)["grpc-encoding"] as string | undefined, flags };
      } finally {
        session.destroy();
      }
    };
    const plain = await streamInput(undefined);
    expect(plain.encoding).toBeUndefined();
    expect(plain.flags.length).toBeGreaterThan(1);
    expect(plain.flags.every((flag) => flag === 0)).toBe(true);
    const gzip = await streamInput("gzip");
    expect(gzip.encoding).toBe("gzip");
    // The accepted run is a small message and goes out plain; the one holding the 96 KiB delta is compressed.
    expect(gzip.flags[0]).toBe(0);
    expect(gzip.flags).toContain(1);
  });

  it("sends a watch batch's ready frame, or compresses it when it is large and the client accepts gzip", async () => {
    const catalog = createClient(WorkerCatalog, createGrpcTransport({ baseUrl: harness.baseUrl }));
    const interaction = createClient(WorkerInteraction, createGrpcTransport({ baseUrl: harness.baseUrl }));
    // A raw HTTP/2 WatchWorker, to see each batch's compressed flag and decode it ourselves.
    const watch = async (acceptEncoding: string | undefined): Promise<{ flags: number[]; text: string }> => {
      const worker = (await catalog.createWorker({ runtimeId: harness.runtime.runtimeId })).worker?.ref;
      const session = http2.connect(harness.baseUrl);
      try {
        const request = toBinary(WatchWorkerRequestSchema, create(WatchWorkerRequestSchema, { worker }));
        const stream = rawGrpcRequest(
          session,
          "/worker_runtime.v1.WorkerObservation/WatchWorker",
          grpcFrame(request),
          accepting(acceptEncoding),
        );
        await once(stream, "response");
        const flags: number[] = [];
        let text = "";
        for await (const { flag, body } of grpcFrames(stream)) {
          flags.push(flag);
          const message = fromBinary(WatchWorkerResponseSchema, flag === 1 ? gunzipSync(body) : body);
          for (const event of message.events) if (event.kind.case === "textDelta") text += event.kind.value.text;
          // The snapshot is out: the watch is live, so the run's events reach it.
          if (flags.length === 1) await interaction.sendInput({ worker, input: { text: "go" } });
          if (text.length >= bigText.length) break;
        }
        return { flags, text };
      } finally {
        session.destroy();
      }
    };
    const plain = await watch(undefined);
    expect(plain.text).toBe(bigText);
    expect(plain.flags.every((flag) => flag === 0)).toBe(true);
    const gzip = await watch("gzip");
    expect(gzip.text).toBe(bigText);
    // The snapshot is small and goes out plain; the batch holding the 96 KiB delta is compressed.
    expect(gzip.flags[0]).toBe(0);
    expect(gzip.flags).toContain(1);
  });
});

/** The grpc-accept-encoding header, when the client accepts an encoding. */
function accepting(encoding: string | undefined): Record<string, string> {
  return encoding ? { "grpc-accept-encoding": encoding } : {};
}
