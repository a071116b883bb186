import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import type { TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { SendInputRequestSchema } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createMemoryStore, createRuntime, StoreWriteError, type Runtime, type RuntimeStore } from "../../src/runtime/index.js";
import { eventually } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/** A memory store whose transcript writes can be held back, and the next one failed, as a slow or full disk would. */
function slowDiskStore(): { store: RuntimeStore; hold(): void; release(): void; failNext(): void } {
  const inner = createMemoryStore();
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
    const run = await runtime.sendInput(
      create(SendInputRequestSchema, { worker: worker.ref, input: { text: "hi" }, busyPolicy: BusyPolicy.REJECT }),
    );
    await eventually(() => started && history !== undefined, 5_000, "the backend to start");
    // The backend runs, and read the history up to its input, while the input's write is still held.
    expect(inputSeq).toBe(1n);
    expect(history).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(committed).toBe(false);
    expect(await transcriptOf(runtime, worker)).toEqual([]);
    expect(seen).toEqual([]);

    disk.release();
    await eventually(async () => (await runtime.getRun({ worker: worker.ref, runId: run.runId })).status === RunStatus.COMPLETED);
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
    const run = await runtime.sendInput(
      create(SendInputRequestSchema, { worker: worker.ref, input: { text: "hi" }, busyPolicy: BusyPolicy.REJECT }),
    );
    await eventually(() => backend.requests.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(tail).toBeUndefined();
    disk.release();
    await eventually(async () => (await runtime.getRun({ worker: worker.ref, runId: run.runId })).status === RunStatus.COMPLETED);
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
    disk.hold();
    disk.failNext();
    const run = await runtime.sendInput(
      create(SendInputRequestSchema, { worker: worker.ref, input: { text: "hi" }, busyPolicy: BusyPolicy.REJECT }),
    );
    await eventually(() => backend.requests.length === 1);
    disk.release();
    await eventually(async () => (await runtime.getRun({ worker: worker.ref, runId: run.runId })).status === RunStatus.FAILED);
    const failed = await runtime.getRun({ worker: worker.ref, runId: run.runId });
    expect(failed.error?.reason).toBe(ErrorReason.STORE_UNAVAILABLE);
    expect(aborted).toBe(true);
    expect(commitError).toBeInstanceOf(StoreWriteError);
    // The failure's notice is all the transcript holds: no answer without its input.
    expect(await transcriptOf(runtime, worker)).toEqual(["1:notice:"]);
    // The next input runs normally.
    const next = await runtime.sendInput(
      create(SendInputRequestSchema, { worker: worker.ref, input: { text: "again" }, busyPolicy: BusyPolicy.REJECT }),
    );
    await eventually(async () => (await runtime.getRun({ worker: worker.ref, runId: next.runId })).status === RunStatus.COMPLETED);
    expect((await transcriptOf(runtime, worker)).slice(1)).toEqual(["2:userMessage:again", "3:assistantMessage:ok"]);
  });
});
