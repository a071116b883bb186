import { once } from "node:events";
import * as http2 from "node:http2";
import { create, type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import {
  WatchRuntimeRequestSchema,
  WatchRuntimeResponseSchema,
  WatchWorkerRequestSchema,
  WatchWorkerResponseSchema,
} from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { type Clients, eventually, type Harness, runToEnd, startHarness } from "../support/harness.js";
import { grpcFrames, rawGrpcRequest } from "../support/raw-grpc.js";
import { grpcFrame } from "../support/raw-http2.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A watcher that stops reading (its HTTP/2 flow-control window never
 * opened: Node's client stops opening it while the stream is paused) must
 * not make the runtime hold its backlog without bound. Every run_changed
 * event carries the run's input, so a few runs with large inputs queue
 * megabytes while the count bound (50,000 events) is nowhere near: the
 * byte bound ends that one stream with RESOURCE_EXHAUSTED /
 * SUBSCRIBER_TOO_SLOW, the metadata naming it, and the watcher resumes
 * from its last cursor without losing an event.
 */

const BACKLOG_BYTES = 1024 * 1024;
const MESSAGE_BYTES = 256 * 1024;
const INPUT = "x".repeat(100_000);
const RUNS = 12;

interface Watched<R extends DescMessage> {
  messages: MessageShape<R>[];
  trailers: http2.IncomingHttpHeaders;
  dataBytes: number;
}

/** Opens a gRPC watch on a raw session and pauses it: nothing is read, so the window stays shut. */
function pausedWatch(session: http2.ClientHttp2Session, path: string, request: Uint8Array): http2.ClientHttp2Stream {
  const stream = rawGrpcRequest(session, path, grpcFrame(request));
  stream.pause();
  return stream;
}

/** Reads a paused watch to its end (bounded in time): its messages, trailers and body bytes. */
async function readToEnd<R extends DescMessage>(stream: http2.ClientHttp2Stream, schema: R): Promise<Watched<R>> {
  const trailersSeen = once(stream, "trailers").then(([trailers]) => trailers as http2.IncomingHttpHeaders);
  let dataBytes = 0;
  const messages: MessageShape<R>[] = [];
  const read = (async () => {
    for await (const frame of grpcFrames(stream)) {
      dataBytes += 5 + frame.body.length;
      messages.push(fromBinary(schema, frame.body));
    }
  })();
  const guard = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`the watch did not end; ${messages.length} messages read`)), 10_000).unref(),
  );
  await Promise.race([read, guard]);
  return { messages, trailers: await trailersSeen, dataBytes };
}

/** Checks the trailers carry RESOURCE_EXHAUSTED / SUBSCRIBER_TOO_SLOW naming the byte bound. */
function expectTooSlowByBytes(trailers: http2.IncomingHttpHeaders): void {
  expect(Number(trailers["grpc-status"])).toBe(Code.ResourceExhausted);
  const bin = String(trailers["grpc-status-details-bin"] ?? "");
  const status = fromBinary(StatusSchema, Buffer.from(bin, "base64"));
  const any = status.details.find((d) => d.typeUrl.endsWith("worker_runtime.v1.ErrorDetail"));
  const detail = any ? fromBinary(ErrorDetailSchema, any.value) : undefined;
  expect(detail?.reason).toBe(ErrorReason.SUBSCRIBER_TOO_SLOW);
  expect(detail?.metadata.max_backlog_bytes).toBe(String(BACKLOG_BYTES));
}

/** What the paused watcher may still be sent: the windows (64 KiB each), one message held by the writer, framing. */
const IN_FLIGHT_BOUND = 2 * 65_535 + 2 * MESSAGE_BYTES;

describe("a watcher that stops reading", () => {
  let harness: Harness | undefined;
  const sessions: http2.ClientHttp2Session[] = [];
  afterEach(async () => {
    for (const session of sessions.splice(0)) session.destroy();
    await harness?.close();
    harness = undefined;
  });

  async function start(): Promise<{ clients: Clients; ref: WorkerRef; session: http2.ClientHttp2Session }> {
    harness = await startHarness({
      executionBackend: new ScriptedBackend(),
      limits: { maxSubscriberBacklogBytes: BACKLOG_BYTES, maxMessageBytes: MESSAGE_BYTES },
    });
    const clients = harness.connect("grpc");
    const { worker } = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
    const session = http2.connect(harness.baseUrl);
    sessions.push(session);
    return { clients, ref: worker?.ref as WorkerRef, session };
  }

  it("WatchWorker: is ended with SUBSCRIBER_TOO_SLOW past the byte bound, other watchers and the runs carry on, and a resume loses nothing", async () => {
    const { clients, ref, session } = await start();
    const request = toBinary(WatchWorkerRequestSchema, create(WatchWorkerRequestSchema, { worker: ref }));
    const paused = pausedWatch(session, "/worker_runtime.v1.WorkerObservation/WatchWorker", request);
    // A reading watcher beside it, on its own session.
    const stopReader = new AbortController();
    const readerEvents: bigint[] = [];
    const completed = new Set<string>();
    const reading = (async () => {
      for await (const message of clients.observation.watchWorker({ worker: ref }, { signal: stopReader.signal })) {
        for (const event of message.events) {
          if (event.seq > 0n) readerEvents.push(event.seq);
          if (event.kind.case === "runChanged" && event.kind.value.status === RunStatus.COMPLETED) completed.add(event.kind.value.runId);
        }
      }
    })().catch((error: unknown) => {
      if (!stopReader.signal.aborted) throw error;
    });
    await once(paused, "response");
    let lastRunId = "";
    for (let i = 0; i < RUNS; i++) {
      const run = await runToEnd(clients, ref, INPUT);
      expect(run?.status).toBe(RunStatus.COMPLETED);
      lastRunId = run?.runId ?? "";
    }
    await eventually(() => completed.has(lastRunId), 10_000, "the reading watcher to see the last run end");
    stopReader.abort();
    await reading;

    const watched = await readToEnd(paused, WatchWorkerResponseSchema);
    expectTooSlowByBytes(watched.trailers);
    // Queued past the bound, what was queued is dropped: the watcher was sent no more than what was in flight.
    expect(watched.dataBytes).toBeLessThan(IN_FLIGHT_BOUND);
    const seen = watched.messages.flatMap((m) => m.events).filter((e) => e.seq > 0n);
    expect(seen.length).toBeLessThan(readerEvents.length);

    // The reading watcher saw every durable event, gap-free.
    const first = readerEvents[0] ?? 0n;
    expect(readerEvents).toEqual(readerEvents.map((_, i) => first + BigInt(i)));

    // Resuming from the last cursor seen delivers the rest, gap-free, up to the last run's end.
    const resumed: bigint[] = seen.map((e) => e.seq);
    const afterCursor = seen.at(-1)?.cursor ?? "";
    for await (const message of clients.observation.watchWorker({ worker: ref, afterCursor })) {
      for (const event of message.events) if (event.seq > 0n) resumed.push(event.seq);
      if (resumed.length >= readerEvents.length) break;
    }
    expect(resumed.slice(0, readerEvents.length)).toEqual(readerEvents);
  });

  it("WatchRuntime: is ended with SUBSCRIBER_TOO_SLOW past the byte bound", async () => {
    const { clients, ref, session } = await start();
    const runtimeId = harness?.runtime.runtimeId ?? "";
    const request = toBinary(WatchRuntimeRequestSchema, create(WatchRuntimeRequestSchema, { runtimeId }));
    const paused = pausedWatch(session, "/worker_runtime.v1.WorkerObservation/WatchRuntime", request);
    await once(paused, "response");
    for (let i = 0; i < RUNS; i++) await runToEnd(clients, ref, INPUT);
    const watched = await readToEnd(paused, WatchRuntimeResponseSchema);
    expectTooSlowByBytes(watched.trailers);
    expect(watched.dataBytes).toBeLessThan(IN_FLIGHT_BOUND);
    // The runtime serves on: a new watch opens.
    const { value } = await clients.observation.watchRuntime({ runtimeId })[Symbol.asyncIterator]().next();
    expect(value?.snapshot).toBeDefined();
  });
});
