import { create } from "@bufbuild/protobuf";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus, StopReason, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { ToolCallSchema, type TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { SendInputRequestSchema } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createMemoryStore, createRuntime, StoreWriteError, type Runtime, type RuntimeStore } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { eventually } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/** A store (memory unless given) whose transcript writes can be held back, and the next one failed, as a slow or full disk would. */
function slowDiskStore(inner: RuntimeStore = createMemoryStore()): {
  store: RuntimeStore;
  hold(): void;
  release(): void;
  failNext(): void;
} {
  let held: { promise: Promise<void>; release: () => void } | undefined;
  let failing = false;
  const store: RuntimeStore = Object.assign(Object.create(inner) as RuntimeStore, {
    appendTranscript: async (workerId: string, entries: TranscriptEntry[]): Promise<void> => {
      await held?.promise;
      if (failing) {
        failing = false;
        throw new StoreWriteError("ENOSPC: no space left on device");
      }
      return inner.appendTranscript(workerId, entries);
    },
  });
  return {
    store,
    hold: () => {
      let release!: () => void;
      const promise = new Promise<void>((resolve) => (release = resolve));
      held = { promise, release };
    },
    release: () => {
      held?.release();
      held = undefined;
    },
    failNext: () => {
      failing = true;
    },
  };
}

async function setUp(backend: ScriptedBackend, store: RuntimeStore): Promise<{ runtime: Runtime; worker: Worker }> {
  const runtime = await createRuntime({ executionBackend: backend, store });
  const { worker } = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
  if (!worker) throw new Error("no worker");
  return { runtime, worker };
}

async function transcriptOf(runtime: Runtime, worker: Worker): Promise<string[]> {
  const { entries } = await runtime.readTranscript({
    $typeName: "worker_runtime.v1.ReadTranscriptRequest",
    worker: worker.ref,
    position: { case: undefined },
    limit: 50,
  });
  return entries.map((entry) => `${entry.seq}:${entry.content.case}:${(entry.content.value as { text?: string }).text ?? ""}`);
}

function send(runtime: Runtime, worker: Worker, text: string, busyPolicy = BusyPolicy.REJECT): Promise<Run> {
  return runtime.sendInput(create(SendInputRequestSchema, { worker: worker.ref, input: { text }, busyPolicy }));
}

/** Waits until the run has `status` (an end, or AWAITING_APPROVAL), and returns it. */
async function ended(runtime: Runtime, worker: Worker, run: Run, status: RunStatus): Promise<Run> {
  const current = (): Promise<Run> => runtime.getRun({ worker: worker.ref, runId: run.runId });
  await eventually(async () => (await current()).status === status, 5_000, `run ${RunStatus[status]}`);
  return current();
}

/** Sends "hi" with its input's write held until the backend has started, then failed; returns the run once it ended. */
async function sendWithFailingInput(
  runtime: Runtime,
  worker: Worker,
  disk: ReturnType<typeof slowDiskStore>,
  backend: ScriptedBackend,
): Promise<Run> {
  disk.hold();
  disk.failNext();
  const run = await send(runtime, worker, "hi");
  await eventually(() => backend.requests.length === 1);
  disk.release();
  return ended(runtime, worker, run, RunStatus.FAILED);
}

const answer = (text: string) => ({
  case: "assistantMessage" as const,
  value: { $typeName: "worker_runtime.v1.AssistantMessage" as const, text },
});

describe("a run's input, written while the run starts", () => {
  it("does not hold the backend back; what the run commits, and what watchers see, come after it", async () => {
    const disk = slowDiskStore();
    const backend = new ScriptedBackend();
    const { runtime, worker } = await setUp(backend, disk.store);
    const seen: string[] = [];
    const watching = new AbortController();
    void (async () => {
      for await (const message of runtime.watchWorker(
        { $typeName: "worker_runtime.v1.WatchWorkerRequest", worker: worker.ref, afterCursor: "" },
        { signal: watching.signal },
      )) {
        for (const event of message.events) {
          const kind = event.kind;
          if (kind.case === "transcriptAppended") seen.push(`entry:${kind.value.content.case}`);
          if (kind.case === "textDelta") seen.push(`delta:${kind.value.text}`);
        }
      }
    })().catch(() => undefined);
    let started = false;
    let committed = false;
    let inputSeq: bigint | undefined;
    let history: TranscriptEntry[] = [];
    backend.enqueue(async (request, sink) => {
      started = true;
      inputSeq = request.inputSeq;
      history = await request.readTranscript(request.inputSeq, 10);
      sink.textDelta("b0", "Hello");
      await sink.commit(answer("Hello"), "b0");
      committed = true;
      return { kind: "completed", stopReason: StopReason.END_TURN };
    });
    disk.hold();
    const run = await send(runtime, worker, "hi");
    await eventually(() => started && history !== undefined, 5_000, "the backend to start");
    // The backend runs, and read the history up to its input, while the input's write is still held.
    expect(inputSeq).toBe(1n);
    expect(history).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(committed).toBe(false);
    expect(await transcriptOf(runtime, worker)).toEqual([]);
    expect(seen).toEqual([]);

    disk.release();
    await ended(runtime, worker, run, RunStatus.COMPLETED);
    expect(committed).toBe(true);
    expect(await transcriptOf(runtime, worker)).toEqual(["1:userMessage:hi", "2:assistantMessage:Hello"]);
    await eventually(() => seen.length === 3);
    expect(seen).toEqual(["entry:userMessage", "delta:Hello", "entry:assistantMessage"]);
    watching.abort();
  });

  it("keeps readTranscript whole for backends that read the tail: a read reaching the input waits for it", async () => {
    const disk = slowDiskStore();
    const backend = new ScriptedBackend();
    const { runtime, worker } = await setUp(backend, disk.store);
    let tail: TranscriptEntry[] | undefined;
    backend.enqueue(async (request, sink) => {
      tail = await request.readTranscript(undefined, 10);
      await sink.commit(answer("ok"));
      return { kind: "completed", stopReason: StopReason.END_TURN };
    });
    disk.hold();
    const run = await send(runtime, worker, "hi");
    await eventually(() => backend.requests.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(tail).toBeUndefined();
    disk.release();
    await ended(runtime, worker, run, RunStatus.COMPLETED);
    expect(tail?.map((entry) => entry.content.case)).toEqual(["userMessage"]);
  });

  it("stops the execution and fails the run STORE_UNAVAILABLE when the input cannot be written; nothing the run made is committed", async () => {
    const disk = slowDiskStore();
    const backend = new ScriptedBackend();
    const { runtime, worker } = await setUp(backend, disk.store);
    let aborted = false;
    let commitError: unknown;
    backend.enqueue(async (_request, sink, signal) => {
      sink.textDelta("b0", "partial");
      await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
      aborted = true;
      // A backend that commits what it had when stopped, as the OpenAI backend does with partial text.
      commitError = await sink.commit(answer("partial"), "b0").then(
        () => undefined,
        (error: unknown) => error,
      );
      return { kind: "cancelled" };
    });
    await expect(sendWithFailingInput(runtime, worker, disk, backend)).resolves.toMatchObject({
      status: RunStatus.FAILED,
      error: { reason: ErrorReason.STORE_UNAVAILABLE },
    });
    expect(aborted).toBe(true);
    expect(commitError).toBeInstanceOf(StoreWriteError);
    // The failure's notice is all the transcript holds: no answer without its input.
    expect(await transcriptOf(runtime, worker)).toEqual(["1:notice:"]);
    // The next input runs normally.
    const next = await send(runtime, worker, "again");
    await ended(runtime, worker, next, RunStatus.COMPLETED);
    expect((await transcriptOf(runtime, worker)).slice(1)).toEqual(["2:userMessage:again", "3:assistantMessage:ok"]);
  });

  it("fails a run STORE_UNAVAILABLE, with its notice, when its backend threw before the input's write failed", async () => {
    const disk = slowDiskStore();
    const backend = new ScriptedBackend();
    const { runtime, worker } = await setUp(backend, disk.store);
    backend.enqueue(async () => {
      throw new Error("the backend could not start");
    });
    await expect(sendWithFailingInput(runtime, worker, disk, backend)).resolves.toMatchObject({
      status: RunStatus.FAILED,
      error: { reason: ErrorReason.STORE_UNAVAILABLE },
    });
    // The failure's notice is written after the failed input, not lost with it.
    expect(await transcriptOf(runtime, worker)).toEqual(["1:notice:"]);
  });

  it("reads the history up to the input only once what comes before it is durable: a parked run's unrun result, on INTERRUPT", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "wr-input-commit-"));
    try {
      // A run waits for approval of c1 when the runtime closes: after the restart it is parked.
      const first = new ScriptedBackend().enqueue(async (_request, sink, signal) => {
        await sink.commit({
          case: "toolCall",
          value: create(ToolCallSchema, { toolCallId: "c1", toolName: "write_file", argumentsJson: "{}" }),
        });
        await sink.requestApproval({ toolCallId: "c1", toolName: "write_file", argumentsJson: "{}" }, signal).catch(() => undefined);
        return { kind: "cancelled" };
      });
      const { runtime: before, worker } = await setUp(first, createFileStore({ dataDir: dir }));
      const parked = await send(before, worker, "write x");
      await ended(before, worker, parked, RunStatus.AWAITING_APPROVAL);
      await before.close();

      const disk = slowDiskStore(createFileStore({ dataDir: dir }));
      const backend = new ScriptedBackend();
      let history: TranscriptEntry[] | undefined;
      backend.enqueue(async (request, sink) => {
        history = await request.readTranscript(request.inputSeq, 10);
        await sink.commit(answer("instead"));
        return { kind: "completed", stopReason: StopReason.END_TURN };
      });
      const runtime = await createRuntime({ executionBackend: backend, store: disk.store });
      try {
        // INTERRUPT ends the parked run, writing its call's result, and starts the new input at once:
        // that result is still being written when the new run reads its history.
        disk.hold();
        const next = await send(runtime, worker, "instead", BusyPolicy.INTERRUPT);
        await eventually(() => backend.requests.length === 1, 5_000, "the new run to start");
        await new Promise((resolve) => setTimeout(resolve, 50));
        disk.release();
        await ended(runtime, worker, next, RunStatus.COMPLETED);
        const transcript = await transcriptOf(runtime, worker);
        expect(transcript.slice(0, 3)).toEqual(["1:userMessage:write x", "2:toolCall:", "3:toolResult:"]);
        // The model is asked with the history the transcript holds before the input: the call's result included.
        expect(history?.map((entry) => `${entry.seq}:${entry.content.case}`)).toEqual(["1:userMessage", "2:toolCall", "3:toolResult"]);
      } finally {
        await runtime.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
