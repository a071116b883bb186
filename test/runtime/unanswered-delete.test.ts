import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { RuntimeStatus } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { createMemoryStore, type RuntimeStore, StoreWriteError } from "../../src/runtime/index.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { type Followed, follow, sawText } from "../support/followed-stream.js";
import { type Clients, eventually, type Harness, PROTOCOLS, startHarness } from "../support/harness.js";
import { answerOrError } from "../support/errors.js";
import { chunk } from "../support/openai-chunks.js";

/** How long the runtime waits for the store (limits.flushTimeoutMs), short here. */
const STORE_BOUND_MS = 300;

/** A store deleteWorker call the test has not answered yet. */
interface HeldDelete {
  workerId: string;
  answer(how: "succeed" | "fail"): void;
}

/**
 * A memory store whose deleteWorker does not answer until the test says so,
 * as a disk that stopped answering would not: it then deletes the worker
 * (the call's late success) or fails. Every other call passes through.
 */
function heldDeleteStore(): { store: RuntimeStore; calls: HeldDelete[]; holdReads(): () => void; readsHeld(): number } {
  const inner = createMemoryStore();
  const calls: HeldDelete[] = [];
  // While set, readTranscript waits for it before it reads (a slow disk under a read).
  let readGate: Promise<void> | undefined;
  let readsHeld = 0;
  const readTranscript: RuntimeStore["readTranscript"] = async (...args) => {
    if (readGate) {
      readsHeld++;
      await readGate;
      readsHeld--;
    }
    return inner.readTranscript(...args);
  };
  const deleteWorker = (workerId: string): Promise<void> =>
    new Promise((resolve, reject) => {
      calls.push({
        workerId,
        answer: (how) =>
          how === "succeed" ? inner.deleteWorker(workerId).then(resolve, reject) : reject(new StoreWriteError("disk gone")),
      });
    });
  const store = new Proxy(inner, {
    get(target, property) {
      if (property === "deleteWorker") return deleteWorker;
      if (property === "readTranscript") return readTranscript;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const holdReads = (): (() => void) => {
    let release = (): void => {};
    readGate = new Promise((resolve) => (release = resolve));
    return () => {
      readGate = undefined;
      release();
    };
  };
  return { store, calls, holdReads, readsHeld: () => readsHeld };
}

/**
 * A worker's delete whose store call never answers: DeleteWorker used to
 * hang, and the worker's streams with it (heartbeats going on), for good.
 * The runtime waits for the store as long as it waits for it at close
 * (limits.flushTimeoutMs), then answers DeleteWorker UNAVAILABLE
 * (STORE_UNAVAILABLE, naming the worker and that the store did not answer),
 * and so ends the StreamInput whose run the delete cancelled; the worker
 * stays listed, readable and watched, as after a failed delete,
 * and a repeated DeleteWorker waits on the same store call rather than
 * piling another onto a store that does not answer. Whatever that call
 * answers later decides: a late success deletes the worker (the store no
 * longer has it), so its streams end NOT_FOUND and it is no longer listed;
 * a late failure keeps it, and a later delete starts afresh. A real server
 * on 127.0.0.1, the generated clients over HTTP/2, both protocols; the
 * provider is the local fake, answering with text and then holding the
 * stream open.
 */
let fake: FakeOpenAI;
let harness: Harness;
let held: ReturnType<typeof heldDeleteStore>;

beforeAll(async () => {
  fake = await startFakeOpenAI();
  fake.setFallback({ kind: "stream", chunks: [chunk({ role: "assistant", content: "" }), chunk({ content: "Hello" })], end: "hang" });
  held = heldDeleteStore();
  harness = await startHarness({
    executionBackend: createOpenAIBackend({ apiKey: "sk-test", baseURL: fake.baseURL }),
    runtimeId: "rt-unanswered",
    store: held.store,
    heartbeatIntervalMs: 100,
    limits: { flushTimeoutMs: STORE_BOUND_MS },
  });
});

afterAll(async () => {
  for (const call of held?.calls ?? []) call.answer("fail");
  await harness?.close();
  await fake?.close();
});

/** DeleteWorker, with a deadline of the client's own so that a hang fails the test rather than stalling it. */
function deleteOf(clients: Clients, worker: WorkerRef) {
  return answerOrError(clients.catalog.deleteWorker({ worker, force: true }, { timeoutMs: 5_000 }));
}

function expectStoreDidNotAnswer(answer: unknown, workerId: string): void {
  expect(answer).toBeInstanceOf(ConnectError);
  const error = answer as ConnectError;
  expect([error.code, error.rawMessage]).toEqual([
    Code.Unavailable,
    `worker ${workerId} was not deleted: the store did not answer within ${STORE_BOUND_MS} ms; retry the delete`,
  ]);
  const detail = error.findDetails(ErrorDetailSchema)[0];
  expect(detail?.reason).toBe(ErrorReason.STORE_UNAVAILABLE);
  expect(detail?.metadata).toEqual({ worker_id: workerId, timeout_ms: String(STORE_BOUND_MS) });
}

/** The worker is there: listed, STOPPED, its transcript readable, a new watch opens with its snapshot. */
async function expectKept(clients: Clients, worker: WorkerRef): Promise<void> {
  expect((await clients.catalog.getWorker({ worker })).worker?.status).toBe(WorkerStatus.STOPPED);
  const listed = (await clients.catalog.listWorkers({ runtimeId: "rt-unanswered" })).workers.map((w) => w.ref?.workerId);
  expect(listed).toContain(worker.workerId);
  expect((await clients.observation.readTranscript({ worker, limit: 10 })).entries[0]?.content.case).toBe("userMessage");
  for await (const message of clients.observation.watchWorker({ worker })) {
    expect(message.snapshot?.worker?.status).toBe(WorkerStatus.STOPPED);
    break;
  }
}

/** The runtime's status, and whether it holds the diagnostic of a delete the store has not answered. */
async function health(clients: Clients, workerId: string): Promise<[RuntimeStatus | undefined, boolean]> {
  const status = (await clients.management.getRuntime({})).runtime?.status;
  const { diagnostics } = await clients.management.listDiagnostics({});
  const told = diagnostics.some(
    (d) =>
      d.code === "store.not_answering" &&
      d.message ===
        `the store has not answered the delete of worker ${workerId} within ${STORE_BOUND_MS} ms; the runtime is degraded until it does`,
  );
  return [status, told];
}

async function expectWatchEndedDeleted(watch: Followed, workerId: string): Promise<void> {
  const end = await watch.ended;
  expect(end).toBeInstanceOf(ConnectError);
  expect([(end as ConnectError).code, (end as ConnectError).rawMessage]).toEqual([Code.NotFound, `worker ${workerId} was deleted`]);
}

describe("a worker delete whose store call does not answer", () => {
  for (const protocol of PROTOCOLS) {
    it(`answers UNAVAILABLE within the bound and keeps the worker; the call's late success deletes it (${protocol})`, async () => {
      const clients = harness.connect(protocol);
      const worker = (await clients.catalog.createWorker({ runtimeId: "rt-unanswered" })).worker?.ref as WorkerRef;
      const watch = follow(clients.observation.watchWorker({ worker }));
      const input = follow(clients.interaction.streamInput({ worker, input: { text: "hi" } }));
      await eventually(() => sawText(watch) && sawText(input), 10_000, "the run's text on both streams");
      const callsBefore = held.calls.length;

      expectStoreDidNotAnswer(await deleteOf(clients, worker), worker.workerId);
      // A store that does not answer is a store problem an operator must see, not only the caller.
      expect(await health(clients, worker.workerId)).toEqual([RuntimeStatus.DEGRADED, true]);
      // The StreamInput saw its run cancelled by the delete, then the delete's answer.
      expectStoreDidNotAnswer(await input.ended, worker.workerId);
      const runEnds = input.events.flatMap((event) => (event.kind.case === "runChanged" ? [event.kind.value.status] : []));
      expect(runEnds.at(-1)).toBe(RunStatus.CANCELLED);
      await expectKept(clients, worker);
      // A read that fails meanwhile cannot tell a bad request from the delete's effect: it says to retry, as a read.
      const unknownRun = await answerOrError(clients.interaction.getRun({ worker, runId: "no-such-run" }));
      expect([(unknownRun as ConnectError).code, (unknownRun as ConnectError).rawMessage]).toEqual([
        Code.Unavailable,
        `worker ${worker.workerId} cannot be read now: the store has not answered its delete (waited ${STORE_BOUND_MS} ms); retry`,
      ]);
      // A repeated delete waits on the same store call, bounded again.
      expectStoreDidNotAnswer(await deleteOf(clients, worker), worker.workerId);
      expect(held.calls.length).toBe(callsBefore + 1);

      held.calls[callsBefore]?.answer("succeed");
      await expectWatchEndedDeleted(watch, worker.workerId);
      expect((await health(clients, worker.workerId))[0]).toBe(RuntimeStatus.SERVING);
      const gone = await answerOrError(clients.catalog.getWorker({ worker }));
      expect((gone as ConnectError).code).toBe(Code.NotFound);
      const listed = (await clients.catalog.listWorkers({ runtimeId: "rt-unanswered" })).workers.map((w) => w.ref?.workerId);
      expect(listed).not.toContain(worker.workerId);
    }, 30_000);

    it(`answers a read that met a repeated delete NOT_FOUND when the shared store call succeeds (${protocol})`, async () => {
      const clients = harness.connect(protocol);
      const worker = (await clients.catalog.createWorker({ runtimeId: "rt-unanswered" })).worker?.ref as WorkerRef;
      await clients.interaction.sendInput({ worker, input: { text: "hi" } });
      const callsBefore = held.calls.length;
      expectStoreDidNotAnswer(await deleteOf(clients, worker), worker.workerId);
      // A second delete waits on the same store call; a read starts meanwhile and is held in the store.
      const second = deleteOf(clients, worker);
      const release = held.holdReads();
      let read: Promise<unknown>;
      try {
        read = answerOrError(clients.observation.readTranscript({ worker, limit: 10 }, { timeoutMs: 5_000 }));
        await eventually(() => held.readsHeld() === 1, 10_000, "the read held in the store");
        held.calls[callsBefore]?.answer("succeed");
        // Within its own bound the second delete succeeds; past it (a loaded machine), it answered UNAVAILABLE first.
        const secondAnswer = await second;
        if (secondAnswer instanceof ConnectError) expectStoreDidNotAnswer(secondAnswer, worker.workerId);
      } finally {
        // The store no longer has the worker: the held read fails there, and answers with the delete's outcome.
        release();
      }
      const answer = await read;
      expect(answer).toBeInstanceOf(ConnectError);
      expect([(answer as ConnectError).code, (answer as ConnectError).rawMessage]).toEqual([
        Code.NotFound,
        `worker ${worker.workerId} was deleted`,
      ]);
    }, 30_000);

    it(`keeps the worker when the call fails late; a later delete starts afresh (${protocol})`, async () => {
      const clients = harness.connect(protocol);
      const worker = (await clients.catalog.createWorker({ runtimeId: "rt-unanswered" })).worker?.ref as WorkerRef;
      await clients.interaction.sendInput({ worker, input: { text: "hi" } });
      const watch = follow(clients.observation.watchWorker({ worker }));
      const callsBefore = held.calls.length;

      expectStoreDidNotAnswer(await deleteOf(clients, worker), worker.workerId);
      held.calls[callsBefore]?.answer("fail");
      await expectKept(clients, worker);
      // It answered, but with a failure: still degraded, as after any failed store write, until the store writes again.
      expect((await health(clients, worker.workerId))[0]).toBe(RuntimeStatus.DEGRADED);

      const deleted = deleteOf(clients, worker);
      await eventually(() => held.calls.length === callsBefore + 2, 10_000, "a second store delete");
      held.calls[callsBefore + 1]?.answer("succeed");
      expect(await deleted).not.toBeInstanceOf(ConnectError);
      await expectWatchEndedDeleted(watch, worker.workerId);
      expect((await health(clients, worker.workerId))[0]).toBe(RuntimeStatus.SERVING);
    }, 30_000);
  }
});
