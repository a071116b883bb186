import { Code } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { WorkerRefSchema, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunSchema, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { InputSchema } from "../../gen/worker_runtime/v1/worker_pb.js";
import { inputFingerprint } from "../../src/runtime/fingerprint.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { expectReason } from "../support/errors.js";
import { startHarness, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";
import { tempDataDir } from "./fs-support.js";
import { checkpointPath } from "./run-checkpoint-support.js";
import { stat } from "node:fs/promises";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

function serve(): Promise<Harness> {
  return startHarness({ store: createFileStore({ dataDir: dir }), executionBackend: new ScriptedBackend() });
}

describe("SendInput request ids across restarts on the file store", () => {
  it("still knows a run's request after the restart that interrupted it rewrote the run", async () => {
    // A worker created through the runtime, then a run left RUNNING as a crash would leave it.
    const first = await serve();
    const runtimeId = first.runtime.runtimeId;
    const { worker } = await first.connect("grpc").catalog.createWorker({ runtimeId, displayName: "w" });
    const ref: WorkerRef = create(WorkerRefSchema, { runtimeId, workerId: worker?.ref?.workerId ?? "" });
    await first.close();
    const store = createFileStore({ dataDir: dir });
    await store.open({ generateRuntimeId: () => "unused" });
    const running = create(RunSchema, {
      runId: "run-crashed",
      worker: ref,
      input: create(InputSchema, { text: "hello" }),
      status: RunStatus.RUNNING,
      requestId: "req-1",
    });
    await store.putRun(ref.workerId, running, { fingerprint: inputFingerprint("hello") });
    await store.close();

    // The next start writes the run again as INTERRUPTED; the one after reads that version.
    await (await serve()).close();
    const third = await serve();
    const clients = third.connect("grpc");
    try {
      const retried = await clients.interaction.sendInput({ worker: ref, input: { text: "hello" }, requestId: "req-1" });
      expect(retried.run?.runId).toBe("run-crashed");
      expect(retried.run?.status).toBe(RunStatus.INTERRUPTED);
      await expectReason(
        () => clients.interaction.sendInput({ worker: ref, input: { text: "other" }, requestId: "req-1" }),
        Code.AlreadyExists,
        ErrorReason.IDEMPOTENCY_CONFLICT,
      );
    } finally {
      await third.close();
    }
  });

  it("knows request ids and interrupts unfinished runs that only the run index checkpoint holds", async () => {
    const first = await serve();
    const runtimeId = first.runtime.runtimeId;
    const { worker } = await first.connect("grpc").catalog.createWorker({ runtimeId, displayName: "w" });
    const ref: WorkerRef = create(WorkerRefSchema, { runtimeId, workerId: worker?.ref?.workerId ?? "" });
    await first.close();
    // Runs written as the core writes them: one left RUNNING by a crash, then
    // enough later runs that close writes a checkpoint past all of them.
    const store = createFileStore({ dataDir: dir, segmentBytes: 4096 });
    await store.open({ generateRuntimeId: () => "unused" });
    const put = (runId: string, status: RunStatus, text: string) =>
      store.putRun(
        ref.workerId,
        create(RunSchema, { runId, worker: ref, input: create(InputSchema, { text }), status, requestId: `req-${runId}` }),
        {
          fingerprint: inputFingerprint(text),
        },
      );
    await put("run-crashed", RunStatus.RUNNING, "hello");
    for (let i = 1; i <= 100; i++) await put(`run-${i}`, RunStatus.COMPLETED, `input ${i}`);
    await store.close();
    await stat(checkpointPath(dir, ref.workerId));

    const second = await serve();
    const clients = second.connect("grpc");
    try {
      expect((await clients.interaction.getRun({ worker: ref, runId: "run-crashed" })).run?.status).toBe(RunStatus.INTERRUPTED);
      const retried = await clients.interaction.sendInput({ worker: ref, input: { text: "hello" }, requestId: "req-run-crashed" });
      expect(retried.run?.runId).toBe("run-crashed");
      const again = await clients.interaction.sendInput({ worker: ref, input: { text: "input 7" }, requestId: "req-run-7" });
      expect(again.run?.runId).toBe("run-7");
      expect(again.run?.status).toBe(RunStatus.COMPLETED);
      await expectReason(
        () => clients.interaction.sendInput({ worker: ref, input: { text: "other" }, requestId: "req-run-7" }),
        Code.AlreadyExists,
        ErrorReason.IDEMPOTENCY_CONFLICT,
      );
    } finally {
      await second.close();
    }
  });
});
