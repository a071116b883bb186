import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { expectReason } from "../support/errors.js";
import { eventually, PROTOCOLS } from "../support/harness.js";
import { holdOpen, replyWith, ScriptedBackend } from "../support/scripted-backend.js";
import { STORE_FACTORIES } from "../support/stores.js";
import { useRuntimeSuite } from "../support/suite.js";

describe.each(STORE_FACTORIES)("worker interaction ($name store)", (storeFactory) => {
  describe.each(PROTOCOLS)("over %s", (protocol) => {
    const suite = useRuntimeSuite(storeFactory, protocol, { backend: () => new ScriptedBackend(), limits: { cancelGraceMs: 2_000 } });

    async function waitForRun(worker: Worker, runId: string, status: RunStatus): Promise<void> {
      await eventually(
        async () => (await suite.clients.interaction.getRun({ worker: worker.ref, runId })).run?.status === status,
        5_000,
        `run ${runId} ${RunStatus[status]}`,
      );
    }

    /** Fills the worker's queue (it must be busy) with max_queue_depth ENQUEUE'd inputs; their answers in order. */
    async function fillQueue(worker: Worker) {
      const queued = [];
      for (let i = 0; i < suite.harness.runtime.limits.maxQueueDepth; i++) {
        queued.push(
          await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: `q${i}` }, busyPolicy: BusyPolicy.ENQUEUE }),
        );
      }
      return queued;
    }

    it("streams deltas, commits the transcript and records usage", async () => {
      const worker = await suite.newWorker();
      suite.backend.enqueue(replyWith("Hello there, friend!", 4, { inputTokens: 12n, outputTokens: 7n }));
      const texts: string[] = [];
      let runId = "";
      let finalStatus = RunStatus.UNSPECIFIED;
      for await (const message of suite.clients.interaction.streamInput({ worker: worker.ref, input: { text: "hi" } })) {
        if (message.run) runId = message.run.runId;
        for (const event of message.events) {
          if (event.kind.case === "textDelta") texts.push(event.kind.value.text);
          if (event.kind.case === "runChanged") finalStatus = event.kind.value.status;
        }
      }
      expect(texts.length).toBe(4);
      expect(texts.join("")).toBe("Hello there, friend!");
      expect(finalStatus).toBe(RunStatus.COMPLETED);

      const transcript = await suite.clients.observation.readTranscript({ worker: worker.ref });
      expect(transcript.entries.map((e) => [e.seq, e.content.case, e.runId])).toEqual([
        [1n, "userMessage", runId],
        [2n, "assistantMessage", runId],
      ]);
      expect(transcript.entries[1]?.content.value).toMatchObject({ text: "Hello there, friend!" });

      const { run } = await suite.clients.interaction.getRun({ worker: worker.ref, runId });
      expect(run?.status).toBe(RunStatus.COMPLETED);
      expect(run?.stopReason).toBe(StopReason.END_TURN);
      expect(run?.usage?.inputTokens).toBe(12n);
      expect(run?.usage?.outputTokens).toBe(7n);
      const after = await suite.clients.catalog.getWorker({ worker: worker.ref });
      expect(after.worker?.usage?.inputTokens).toBe(12n);
      expect(after.worker?.status).toBe(WorkerStatus.IDLE);
    });

    it("refuses a second input under REJECT with WORKER_BUSY", async () => {
      const worker = await suite.newWorker();
      const held = holdOpen("thinking");
      suite.backend.enqueue(held.script);
      const first = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "one" } });
      await held.started;
      const detail = await expectReason(
        () => suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "two" }, busyPolicy: BusyPolicy.REJECT }),
        Code.FailedPrecondition,
        ErrorReason.WORKER_BUSY,
      );
      expect(detail.metadata["active_run_id"]).toBe(first.run?.runId);
      held.release();
      await waitForRun(worker, first.run?.runId ?? "", RunStatus.COMPLETED);
    });

    it("runs queued inputs in order under ENQUEUE", async () => {
      const worker = await suite.newWorker();
      const held = holdOpen("first");
      suite.backend.enqueue(held.script, replyWith("second"), replyWith("third"));
      const one = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "1" } });
      await held.started;
      const two = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "2" }, busyPolicy: BusyPolicy.ENQUEUE });
      const three = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "3" }, busyPolicy: BusyPolicy.ENQUEUE });
      expect(two.run?.status).toBe(RunStatus.QUEUED);
      const busy = await suite.clients.catalog.getWorker({ worker: worker.ref });
      expect(busy.worker?.queuedRuns).toBe(2);
      held.release();
      await waitForRun(worker, three.run?.runId ?? "", RunStatus.COMPLETED);
      const transcript = await suite.clients.observation.readTranscript({ worker: worker.ref });
      const texts = transcript.entries.map((e) => (e.content.value as { text: string }).text);
      expect(texts).toEqual(["1", "first", "2", "second", "3", "third"]);
      expect(transcript.entries.map((e) => e.runId)).toEqual([
        one.run?.runId,
        one.run?.runId,
        two.run?.runId,
        two.run?.runId,
        three.run?.runId,
        three.run?.runId,
      ]);
    });

    it("refuses input past the queue bound with QUEUE_FULL", async () => {
      const worker = await suite.newWorker();
      const held = holdOpen("busy");
      suite.backend.enqueue(held.script);
      await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "first" } });
      await held.started;
      const depth = suite.harness.runtime.limits.maxQueueDepth;
      const queued = await fillQueue(worker);
      await expectReason(
        () => suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "over" }, busyPolicy: BusyPolicy.ENQUEUE }),
        Code.ResourceExhausted,
        ErrorReason.QUEUE_FULL,
      );
      const cancelled = await suite.clients.interaction.cancelRun({ worker: worker.ref, runId: queued[0]?.run?.runId ?? "" });
      expect(cancelled.run?.status).toBe(RunStatus.CANCELLED);
      await suite.clients.catalog.stopWorker({ worker: worker.ref });
      held.release();
      const last = await suite.clients.interaction.getRun({ worker: worker.ref, runId: queued[depth - 1]?.run?.runId ?? "" });
      expect(last.run?.status).toBe(RunStatus.CANCELLED);
    });

    it("takes an INTERRUPT even when ENQUEUE'd inputs fill the queue: it replaces the active run, not a queue place", async () => {
      const worker = await suite.newWorker();
      const held = holdOpen("partial");
      const next = holdOpen("the first queued");
      suite.backend.enqueue(held.script, replyWith("at once"), next.script);
      const first = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "first" } });
      await held.started;
      const depth = suite.harness.runtime.limits.maxQueueDepth;
      const queued = await fillQueue(worker);
      const interrupting = await suite.clients.interaction.sendInput({
        worker: worker.ref,
        input: { text: "now" },
        busyPolicy: BusyPolicy.INTERRUPT,
      });
      await waitForRun(worker, interrupting.run?.runId ?? "", RunStatus.COMPLETED);
      const firstRun = await suite.clients.interaction.getRun({ worker: worker.ref, runId: first.run?.runId ?? "" });
      expect(firstRun.run?.status).toBe(RunStatus.CANCELLED);
      // The ENQUEUE'd inputs keep their places and order: the first of them runs next.
      await next.started;
      const runs = await Promise.all(
        queued.map(
          async (sent) => (await suite.clients.interaction.getRun({ worker: worker.ref, runId: sent.run?.runId ?? "" })).run?.status,
        ),
      );
      expect(runs).toEqual([RunStatus.RUNNING, ...Array.from({ length: depth - 1 }, () => RunStatus.QUEUED)]);
      await suite.clients.catalog.stopWorker({ worker: worker.ref });
      next.release();
    });

    it("cancels the current run and starts the new one under INTERRUPT", async () => {
      const worker = await suite.newWorker();
      const held = holdOpen("partial answer");
      suite.backend.enqueue(held.script, replyWith("replacement"));
      const first = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "slow" } });
      await held.started;
      const second = await suite.clients.interaction.sendInput({
        worker: worker.ref,
        input: { text: "fast" },
        busyPolicy: BusyPolicy.INTERRUPT,
      });
      await waitForRun(worker, second.run?.runId ?? "", RunStatus.COMPLETED);
      const firstRun = await suite.clients.interaction.getRun({ worker: worker.ref, runId: first.run?.runId ?? "" });
      expect(firstRun.run?.status).toBe(RunStatus.CANCELLED);
      expect(firstRun.run?.stopReason).toBe(StopReason.CANCELLED);
      const transcript = await suite.clients.observation.readTranscript({ worker: worker.ref });
      const texts = transcript.entries.map((e) => (e.content.value as { text: string }).text);
      expect(texts).toEqual(["slow", "partial answer", "fast", "replacement"]);
    });

    it("CancelRun aborts the backend's AbortSignal and keeps the partial output", async () => {
      const worker = await suite.newWorker();
      const held = holdOpen("half of it");
      suite.backend.enqueue(held.script);
      const sent = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "go" } });
      await held.started;
      const signal = suite.backend.signals[suite.backend.signals.length - 1];
      expect(signal?.aborted).toBe(false);
      const { run } = await suite.clients.interaction.cancelRun({ worker: worker.ref, runId: sent.run?.runId ?? "" });
      expect(signal?.aborted).toBe(true);
      expect(run?.status).toBe(RunStatus.CANCELLED);
      const transcript = await suite.clients.observation.readTranscript({ worker: worker.ref });
      expect(transcript.entries.map((e) => (e.content.value as { text: string }).text)).toEqual(["go", "half of it"]);
      const again = await suite.clients.interaction.cancelRun({ worker: worker.ref, runId: sent.run?.runId ?? "" });
      expect(again.run?.status).toBe(RunStatus.CANCELLED);
      expect((await suite.clients.catalog.getWorker({ worker: worker.ref })).worker?.status).toBe(WorkerStatus.IDLE);
    });

    it("ends a run that ignores its AbortSignal after the grace period", async () => {
      const worker = await suite.newWorker();
      let started!: () => void;
      const running = new Promise<void>((resolve) => (started = resolve));
      suite.backend.enqueue(async () => {
        started();
        return new Promise(() => {});
      });
      const sent = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "stuck" } });
      await running;
      const { run } = await suite.clients.interaction.cancelRun({ worker: worker.ref, runId: sent.run?.runId ?? "" });
      expect(run?.status).toBe(RunStatus.CANCELLED);
      const next = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "works again" } });
      await waitForRun(worker, next.run?.runId ?? "", RunStatus.COMPLETED);
    });

    it("returns the same run for a repeated request_id", async () => {
      const worker = await suite.newWorker();
      const requestId = `send-${protocol}`;
      const first = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "once" }, requestId });
      const second = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "once" }, requestId });
      expect(second.run?.runId).toBe(first.run?.runId);
      await expectReason(
        () => suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "different" }, requestId }),
        Code.AlreadyExists,
        ErrorReason.IDEMPOTENCY_CONFLICT,
      );
      await waitForRun(worker, first.run?.runId ?? "", RunStatus.COMPLETED);
      const runs = await suite.clients.interaction.listRuns({ worker: worker.ref });
      expect(runs.runs.map((r) => r.runId)).toEqual([first.run?.runId]);
    });

    it("fails a run with the backend's typed reason and a notice in the transcript", async () => {
      const worker = await suite.newWorker();
      suite.backend.enqueue(async () => ({
        kind: "failed",
        reason: ErrorReason.PROVIDER_AUTH_FAILED,
        message: "the provider rejected the API key",
      }));
      const sent = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "x" } });
      await waitForRun(worker, sent.run?.runId ?? "", RunStatus.FAILED);
      const { run } = await suite.clients.interaction.getRun({ worker: worker.ref, runId: sent.run?.runId ?? "" });
      expect(run?.error?.reason).toBe(ErrorReason.PROVIDER_AUTH_FAILED);
      const transcript = await suite.clients.observation.readTranscript({ worker: worker.ref });
      expect(transcript.entries.at(-1)?.content).toMatchObject({ case: "notice", value: { code: "run.failed" } });
    });

    it("lists runs newest first with pagination", async () => {
      const worker = await suite.newWorker();
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const { run } = await suite.clients.interaction.sendInput({
          worker: worker.ref,
          input: { text: `m${i}` },
          busyPolicy: BusyPolicy.ENQUEUE,
        });
        ids.push(run?.runId ?? "");
      }
      await waitForRun(worker, ids[4] ?? "", RunStatus.COMPLETED);
      const seen: string[] = [];
      let pageToken = "";
      do {
        const page = await suite.clients.interaction.listRuns({ worker: worker.ref, pageSize: 2, pageToken });
        seen.push(...page.runs.map((r) => r.runId));
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      expect(seen).toEqual([...ids].reverse());
    });

    it("reads the transcript in bounded pages from both ends", async () => {
      const worker = await suite.newWorker();
      let last = "";
      for (let i = 0; i < 6; i++) {
        const { run } = await suite.clients.interaction.sendInput({
          worker: worker.ref,
          input: { text: `q${i}` },
          busyPolicy: BusyPolicy.ENQUEUE,
        });
        last = run?.runId ?? "";
      }
      await waitForRun(worker, last, RunStatus.COMPLETED);
      const tail = await suite.clients.observation.readTranscript({ worker: worker.ref, limit: 4 });
      expect(tail.entries.map((e) => e.seq)).toEqual([9n, 10n, 11n, 12n]);
      expect(tail.hasMore).toBe(true);
      expect(tail.lastSeq).toBe(12n);
      const before = await suite.clients.observation.readTranscript({
        worker: worker.ref,
        position: { case: "beforeSeq", value: 9n },
        limit: 4,
      });
      expect(before.entries.map((e) => e.seq)).toEqual([5n, 6n, 7n, 8n]);
      const head = await suite.clients.observation.readTranscript({
        worker: worker.ref,
        position: { case: "afterSeq", value: 0n },
        limit: 5,
      });
      expect(head.entries.map((e) => e.seq)).toEqual([1n, 2n, 3n, 4n, 5n]);
      expect(head.hasMore).toBe(true);
      const end = await suite.clients.observation.readTranscript({
        worker: worker.ref,
        position: { case: "afterSeq", value: 10n },
        limit: 5,
      });
      expect(end.entries.map((e) => e.seq)).toEqual([11n, 12n]);
      expect(end.hasMore).toBe(false);
    });
  });
});
