import { fromBinary } from "@bufbuild/protobuf";
import * as http2 from "node:http2";
import { isDeepStrictEqual } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { Backend } from "../../src/backend/index.js";
import type { Runtime } from "../../src/runtime/index.js";
import type { BackendWithRemote } from "../support/backend-with-remote.js";
import { type CuttableProxy, startCuttableProxy } from "../support/cuttable-proxy.js";
import type { FakeOpenAI } from "../support/fake-openai.js";
import { expectEndedByDelete, follow, sawText } from "../support/followed-stream.js";
import { type Clients, eventually } from "../support/harness.js";
import { reply, replyChunks } from "../support/openai-chunks.js";
import { startSharedWatchSetup, useWatchReaders, workerWatchers } from "./shared-watch-setup.js";
import type { WorkerWatchReader } from "./worker-watch-reader.js";

/**
 * How the clients of a worker's shared upstream WatchWorker in a Backend
 * (shared-worker-watch.ts) fare when something ends or goes wrong: the
 * Backend's connection to the runtime cut and restored (every client ends
 * up showing what the runtime shows, durable events once each, in order),
 * a client that stops reading (ended alone with SUBSCRIBER_TOO_SLOW while
 * the others get everything), the worker deleted (every client ends with
 * the runtime's NOT_FOUND), clients leaving (their places released at once,
 * the upstream closed a linger after the last). A remote runtime (a real
 * server, reached through a TCP proxy the test can cut) whose per-worker
 * watcher limit is 2; gRPC, Connect JSON and the console's transport.
 */

const LINGER_MS = 1_500;

let fake: FakeOpenAI;
let proxy: CuttableProxy;
let remote: Runtime;
let served: BackendWithRemote;
let backend: Backend;
let via: Record<"grpc" | "connect" | "console" | "direct", Clients>;
const watch = useWatchReaders(() => remote);

beforeAll(async () => {
  ({ fake, remote, served, backend, via } = await startSharedWatchSetup({
    remoteUrl: async (address) => {
      proxy = await startCuttableProxy(address);
      return proxy.url.replace(/\/$/, "");
    },
    backend: { workerWatchLingerMs: LINGER_MS, workerWatchBounds: { maxEvents: 64, maxBytes: 64 * 1024 } },
  }));
}, 60_000);

afterAll(async () => {
  await served?.close();
  await proxy?.close();
  await fake?.close();
});

async function newWorker(name: string): Promise<WorkerRef> {
  return (await via.grpc.catalog.createWorker({ runtimeId: "rs", displayName: name })).worker?.ref as WorkerRef;
}

async function snapshotted(...watches: WorkerWatchReader[]): Promise<void> {
  await eventually(() => watches.every((w) => w.messages.length > 0 || w.ended !== undefined), 10_000, "every snapshot");
  for (const w of watches) expect(w.ended).toBeUndefined();
}

async function runEnded(worker: WorkerRef, runId: string): Promise<void> {
  await eventually(
    async () => ((await via.direct.interaction.getRun({ worker, runId })).run?.status ?? 0) >= RunStatus.COMPLETED,
    15_000,
    "the run to end",
  );
}

/** Durable events once each, in order, every one with a cursor. */
function expectDurableInOrder(reader: WorkerWatchReader, what: string): void {
  const seqs = reader.durable.map((event) => event.seq);
  const first = seqs[0] ?? 0n;
  expect(seqs, what).toEqual(seqs.map((_, i) => first + BigInt(i)));
  expect(new Set(reader.durable.map((event) => event.cursor)).size, what).toBe(seqs.length);
}

describe("the clients of a worker's shared upstream watch", () => {
  it("show what the runtime shows after the Backend's connection to it was cut mid-run and restored", async () => {
    const worker = await newWorker("cut");
    let cutOver = () => {};
    const held = new Promise<void>((resolve) => (cutOver = resolve));
    const text = "before the cut, and all of this while the Backend is away";
    fake.enqueue(reply({ text }, { waitBefore: { 2: held } }));
    const clients = { grpc: watch(via.grpc, worker), connect: watch(via.connect, worker), console: watch(via.console, worker) };
    const direct = watch(via.direct, worker);
    await snapshotted(direct, ...Object.values(clients));
    const { run } = await via.direct.interaction.sendInput({ worker, input: { text: "go" } });
    for (const reader of Object.values(clients)) await eventually(() => reader.streamedText() === "befo", 10_000, "the first text");
    proxy.cut();
    try {
      await eventually(() => backend.directory.get("rs")?.health !== RuntimeHealth.READY, 10_000, "the Backend lost rs");
      cutOver();
      await runEnded(worker, run?.runId ?? "");
      await eventually(() => direct.view().runs.size === 0, 10_000, "the direct watch told the end");
    } finally {
      proxy.restore();
      cutOver();
    }
    await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "rs READY again");
    for (const [protocol, reader] of Object.entries(clients)) {
      await eventually(() => isDeepStrictEqual(reader.view(), direct.view()), 10_000, `${protocol} caught up`).catch(() => {});
      expect(reader.view(), protocol).toEqual(direct.view());
      expect(reader.ended, protocol).toBeUndefined();
      expectDurableInOrder(reader, protocol);
    }
    // One joining now gets the snapshot cut from the shared view, caught up too.
    const late = watch(via.connect, worker);
    await snapshotted(late);
    expect(late.view()).toEqual(direct.view());
    expect(backend.workerWatch("rs", worker.workerId)?.readerCount).toBe(4);
  });

  it("end a client that stops reading alone, with SUBSCRIBER_TOO_SLOW, while the others get every event", async () => {
    const worker = await newWorker("slow");
    const readersOk = [watch(via.grpc, worker), watch(via.connect, worker)];
    await snapshotted(...readersOk);
    const session = http2.connect(`http://${served.backendServer.h2Address}`);
    try {
      const slow = stalledWatch(session, worker);
      await eventually(() => backend.workerWatch("rs", worker.workerId)?.readerCount === 3, 10_000, "the stalled client served");
      // Pieces of 2,000 characters: far more bytes than a stream's flow-control window, and events than the ring's 64.
      const text = "x".repeat(400_000);
      fake.enqueue(reply({ text, pieceSize: 2_000 }, { delayMs: 5 }));
      const { run } = await via.grpc.interaction.sendInput({ worker, input: { text: "a long answer" } });
      await runEnded(worker, run?.runId ?? "");
      for (const reader of readersOk) {
        await eventually(() => reader.view().runs.size === 0, 10_000, "told the end");
        expect(reader.streamedText()).toBe(text);
        expect(reader.ended).toBeUndefined();
      }
      slow.stream.resume();
      const end = await slow.ended;
      expect(end.code).toBe("resource_exhausted");
      expect(end.reason).toBe(ErrorReason.SUBSCRIBER_TOO_SLOW);
      await eventually(() => backend.workerWatch("rs", worker.workerId)?.readerCount === 2, 10_000, "its place released");
    } finally {
      session.destroy();
    }
  });

  it("all end with the runtime's NOT_FOUND when the worker is deleted", async () => {
    const worker = await newWorker("deleted");
    fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "a partial answer" }), end: "hang" });
    const followed = [via.grpc, via.connect, via.console].map((from) => follow(from.observation.watchWorker({ worker })));
    await eventually(() => backend.workerWatch("rs", worker.workerId)?.readerCount === 3, 10_000, "three clients served");
    await via.grpc.interaction.sendInput({ worker, input: { text: "go" } });
    await eventually(() => followed.every(sawText), 10_000, "every client streaming");
    await via.grpc.catalog.deleteWorker({ worker, force: true });
    for (const one of followed) await expectEndedByDelete(one, worker.workerId);
    expect(backend.workerWatch("rs", worker.workerId)).toBeUndefined();
  });

  it("release a client's place as it leaves, and close the upstream a linger after the last left", async () => {
    const worker = await newWorker("left");
    const [first, second] = [watch(via.grpc, worker), watch(via.connect, worker)] as [WorkerWatchReader, WorkerWatchReader];
    await snapshotted(first, second);
    const shared = backend.workerWatch("rs", worker.workerId);
    expect(shared?.readerCount).toBe(2);
    first.close();
    await eventually(() => shared?.readerCount === 1, 1_000, "the first place released");
    second.close();
    await eventually(() => shared?.readerCount === 0, 1_000, "the second place released");
    // Within the linger a new client is served from the same upstream.
    const third = watch(via.console, worker);
    await snapshotted(third);
    expect(backend.workerWatch("rs", worker.workerId)).toBe(shared);
    expect(workerWatchers(remote)).toBe(1);
    third.close();
    await eventually(() => shared?.readerCount === 0, 1_000, "the third place released");
    const left = Date.now();
    await eventually(() => workerWatchers(remote) === 0, 10_000, "the upstream closed");
    expect(Date.now() - left).toBeGreaterThanOrEqual(LINGER_MS - 100);
    expect(backend.workerWatch("rs", worker.workerId)).toBeUndefined();
  });
});

/** A Connect (binary) WatchWorker that reads its first bytes, then no more until resumed; how it ended. */
function stalledWatch(session: http2.ClientHttp2Session, worker: WorkerRef) {
  const ref = Buffer.concat([field(1, Buffer.from(worker.runtimeId)), field(2, Buffer.from(worker.workerId))]);
  const body = field(1, ref);
  const envelope = Buffer.alloc(5);
  envelope.writeUInt32BE(body.length, 1);
  const stream = session.request({
    ":method": "POST",
    ":path": "/worker_runtime.v1.WorkerObservation/WatchWorker",
    "content-type": "application/connect+proto",
  });
  stream.end(Buffer.concat([envelope, body]));
  stream.once("data", () => stream.pause());
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise<{ code: string; reason: ErrorReason | undefined }>((resolve, reject) => {
    stream.on("error", reject);
    stream.on("end", () => {
      const all = Buffer.concat(chunks);
      let end: { code: string; reason: ErrorReason | undefined } = { code: "none", reason: undefined };
      for (let at = 0; at + 5 <= all.length; ) {
        const length = all.readUInt32BE(at + 1);
        if ((all[at] ?? 0) & 2) {
          const error = JSON.parse(all.subarray(at + 5, at + 5 + length).toString()).error ?? {};
          const detail = error.details?.[0]?.value;
          end = { code: error.code, reason: detail ? fromBinary(ErrorDetailSchema, Buffer.from(detail, "base64")).reason : undefined };
        }
        at += 5 + length;
      }
      resolve(end);
    });
  });
  return { stream, ended };
}

/** A length-delimited protobuf field (lengths here are under 128). */
function field(no: number, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([(no << 3) | 2, data.length]), data]);
}
