import { Code, ConnectError } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { createRuntime, type RuntimeStore, silentLogger } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { type Clients, eventually, PROTOCOLS } from "../support/harness.js";
import { answerOrError } from "../support/errors.js";
import { chunk } from "../support/openai-chunks.js";

/**
 * Observation RPCs opened while the file store is in the middle of a
 * worker's delete: it has renamed the worker's directory away (and so no
 * longer knows the worker) and waits on the fsync that makes the rename
 * durable, held here through the store's test-only fault hook as a slow
 * disk would hold it. WatchWorker failed INTERNAL (the store's "unknown
 * worker" when it checked the resume point), directly and through the
 * Backend, and GetRun said the run did not exist. They answer with the
 * delete's outcome instead: NOT_FOUND "worker W was deleted" when the
 * delete succeeds; when it fails (the rename undone), the answer they would
 * have had without it (the snapshot and a live watch, the run). The worker
 * is on a remote runtime (a real server on 127.0.0.1) that a Backend
 * routes to; clients call both over HTTP/2, both protocols.
 */

let fake: FakeOpenAI;
let served: BackendWithRemote;
let dataDir: string;
/** Set by a test: the next fsync of the workers dir (the delete's) waits for it, then fails if it says so. */
let gate: { entered(): void; released: Promise<"succeed" | "fail"> } | undefined;
/** Calls that reached the store to read a worker's state since the held fsync began. */
let reads = 0;

/**
 * The file store, its calls passed on unchanged; those that read a worker's
 * state are counted, so that a test knows its requests have reached the
 * store in the window before it lets the delete go on.
 */
function countingReads(inner: RuntimeStore): RuntimeStore {
  const counted = new Set<PropertyKey>(["earliestEventSeq", "getRun", "readTranscript", "readEvents", "listRuns"]);
  return new Proxy(inner, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (counted.has(property)) reads++;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

beforeAll(async () => {
  fake = await startFakeOpenAI();
  fake.setFallback({ kind: "stream", chunks: [chunk({ role: "assistant", content: "" }), chunk({ content: "Hello" })], end: "hang" });
  dataDir = await mkdtemp(path.join(os.tmpdir(), "wr-observed-delete-"));
  const faults = {
    beforeSync(file: string): Promise<void> | undefined {
      const held = file === "workers" ? gate : undefined;
      if (!held) return undefined;
      gate = undefined;
      reads = 0;
      held.entered();
      return held.released.then((how) => {
        if (how === "fail") throw Object.assign(new Error("input/output error"), { code: "EIO" });
      });
    },
  };
  const provider = () => createOpenAIBackend({ apiKey: "sk-test", baseURL: fake.baseURL });
  served = await startBackendWithRemote({
    remote: await createRuntime({
      logger: silentLogger,
      runtimeId: "rt-obsdel",
      store: countingReads(createFileStore({ dataDir, faults })),
      executionBackend: provider(),
    }),
    embedded: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
  });
}, 30_000);

afterAll(async () => {
  await served?.close();
  await fake?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** How a call ended: its answer, or the ConnectError it failed with. */
/** The first message of a watch, or the error it failed with; the rest of the stream is read on in the background. */
function watchOf(stream: AsyncIterable<{ snapshot?: unknown }>): { first: Promise<unknown>; ended: Promise<ConnectError | "clean"> } {
  let firstSeen: (value: unknown) => void = () => {};
  const first = new Promise<unknown>((resolve) => (firstSeen = resolve));
  const ended = (async () => {
    try {
      for await (const message of stream) firstSeen(message.snapshot !== undefined ? "snapshot" : "message");
      return "clean" as const;
    } catch (error) {
      const typed = ConnectError.from(error);
      firstSeen(typed);
      return typed;
    }
  })();
  return { first, ended };
}

/** Watches of the worker directly and through the Backend, each from its snapshot and from `cursor`. */
function fourWatches(direct: Clients, routed: Clients, worker: WorkerRef, cursor: string): ReturnType<typeof watchOf>[] {
  return [direct, routed].flatMap((clients) => [
    watchOf(clients.observation.watchWorker({ worker })),
    watchOf(clients.observation.watchWorker({ worker, afterCursor: cursor })),
  ]);
}

function expectDeleted(answer: unknown, workerId: string): void {
  expect(answer).toBeInstanceOf(ConnectError);
  const error = answer as ConnectError;
  expect([error.code, error.rawMessage]).toEqual([Code.NotFound, `worker ${workerId} was deleted`]);
  expect(error.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.NOT_FOUND);
}

/** A worker whose run the force-delete cancels, and its delete held at the store's fsync of the rename. */
async function workerMidDelete(direct: Clients, how: Promise<"succeed" | "fail">) {
  const worker = (await direct.catalog.createWorker({ runtimeId: "rt-obsdel" })).worker?.ref as WorkerRef;
  const runId = (await direct.interaction.sendInput({ worker, input: { text: "hi" } })).run?.runId ?? "";
  await eventually(async () => (await direct.interaction.getRun({ worker, runId })).run?.status === RunStatus.RUNNING, 10_000, "run");
  const cursor = await (async () => {
    for await (const message of direct.observation.watchWorker({ worker })) return message.snapshot?.cursor ?? "";
    return "";
  })();
  let entered = (): void => {};
  const inWindow = new Promise<void>((resolve) => (entered = resolve));
  gate = { entered, released: how };
  const deleted = answerOrError(direct.catalog.deleteWorker({ worker, force: true }));
  await inWindow;
  return { worker, runId, cursor, deleted };
}

describe("observation of a worker while the file store deletes it", () => {
  for (const protocol of PROTOCOLS) {
    it(`answers NOT_FOUND once the delete succeeds, not INTERNAL (${protocol})`, async () => {
      const direct = served.remoteClients(protocol);
      const routed = served.clients(protocol);
      let release: (how: "succeed" | "fail") => void = () => {};
      const { worker, runId, cursor, deleted } = await workerMidDelete(direct, new Promise((resolve) => (release = resolve)));

      // Still listed until the store's delete succeeds.
      expect((await direct.catalog.getWorker({ worker })).worker?.status).toBe(WorkerStatus.STOPPED);
      const watches = fourWatches(direct, routed, worker, cursor);
      const run = answerOrError(direct.interaction.getRun({ worker, runId }));
      const routedRun = answerOrError(routed.interaction.getRun({ worker, runId }));
      await eventually(() => reads >= 6, 10_000, "the four watches and two reads at the store");
      release("succeed");
      expect(await deleted).not.toBeInstanceOf(ConnectError);

      for (const watch of watches) expectDeleted(await watch.ended, worker.workerId);
      expectDeleted(await run, worker.workerId);
      expectDeleted(await routedRun, worker.workerId);
    }, 30_000);

    it(`answers as without the delete once it fails and the worker stays (${protocol})`, async () => {
      const direct = served.remoteClients(protocol);
      const routed = served.clients(protocol);
      let release: (how: "succeed" | "fail") => void = () => {};
      const { worker, runId, cursor, deleted } = await workerMidDelete(direct, new Promise((resolve) => (release = resolve)));

      const watches = fourWatches(direct, routed, worker, cursor);
      const run = answerOrError(direct.interaction.getRun({ worker, runId }));
      const transcript = answerOrError(direct.observation.readTranscript({ worker, limit: 10 }));
      await eventually(() => reads >= 6, 10_000, "the four watches and two reads at the store");
      release("fail");
      const refused = await deleted;
      expect(refused).toBeInstanceOf(ConnectError);
      expect((refused as ConnectError).code).toBe(Code.Unavailable);

      for (const watch of watches) expect(await watch.first).toBe("snapshot");
      expect(((await run) as { run?: { status: RunStatus } }).run?.status).toBe(RunStatus.CANCELLED);
      expect(((await transcript) as { entries: { content: { case: unknown } }[] }).entries[0]?.content.case).toBe("userMessage");

      // The watches are live: the worker's delete that succeeds now ends them with NOT_FOUND.
      await direct.catalog.deleteWorker({ worker });
      for (const watch of watches) expectDeleted(await watch.ended, worker.workerId);
    }, 30_000);
  }
});
