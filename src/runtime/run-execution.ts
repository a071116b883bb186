import type { Context } from "@opentelemetry/api";
import { create } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { withWellFormedStrings } from "./well-formed-strings.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunErrorSchema, RunSchema, RunStatus, StopReason, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerSchema, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { abortError, RuntimeError } from "./errors.js";
import { errorLogFields } from "./error-log-fields.js";
import { childLogger } from "./logger.js";
import { traceLogFields } from "./trace-log-fields.js";
import type { RunOutcome, RunResume, RunSink } from "./execution-backend.js";
import { createRunSink } from "./run-sink.js";
import { commitFailureNotice, commitUnrunResult } from "./run-end-entries.js";
import { traceRun } from "./run-tracing.js";
import { InputCommit } from "./input-commit.js";
import { holdsExecution, type ActiveRun, type RunSlot } from "./run-slot.js";
import { MAX_RUN_ERROR_MESSAGE_BYTES } from "./limits.js";
import { cutUtf8 } from "./utf8-cut.js";
import type { SessionDeps } from "./session-deps.js";
import { isStoreWriteFailure } from "./store-errors.js";
import type { WorkerJournal } from "./worker-journal.js";

/** How a parked run's execution starts again (see RunRequest.resume). */
export interface ResumeInit {
  resume: RunResume;
  /** The write that records the run RUNNING again; nothing runs before it is durable. */
  recorded: Promise<unknown>;
}

/** What starting an execution needs of its worker's session. */
export interface ExecutionHost {
  readonly worker: Worker;
  readonly journal: WorkerJournal;
  readonly deps: SessionDeps;
  slot(): RunSlot;
  /** Frees the slot of the run it holds, ends the run with the outcome and starts the next one. */
  endHeldRun(run: Run, outcome: RunOutcome): Promise<void>;
}

/**
 * Starts the execution of the run the slot holds, fresh or resumed, with
 * its sink (open while the slot holds it). When the backend returns and the
 * slot still holds the run, what must be durable before the run shows as
 * ended is committed first — the result of a decided call the resumed
 * execution never reached, a failure's notice — then the run ends.
 */
export function launchRun(active: ActiveRun, host: ExecutionHost, resumed?: ResumeInit): void {
  const { journal, deps, worker } = host;
  const holds = (candidate: ActiveRun = active): boolean => holdsExecution(host.slot(), candidate);
  const sink = createRunSink(active, { events: journal.events, journal, now: () => deps.now(), isOpen: holds, limits: deps.limits });
  const { run } = active;
  const execute = async (): Promise<RunOutcome> => {
    await afterCallersResponse();
    return traceRun(run, worker, active.traceContext, (runTrace) =>
      executeRun(active, sink, worker, journal.events, deps, runTrace, resumed),
    );
  };
  active.done = execute().then(async (outcome) => {
    const unrun = outcome.kind !== "completed" ? active.decided?.call : undefined;
    if (unrun && holds()) await commitUnrunResult(journal, run.runId, unrun, outcome.kind === "cancelled");
    if (outcome.kind === "failed" && holds()) await commitFailureNotice(journal, run.runId, outcome.message);
    if (holds()) await host.endHeldRun(run, outcome);
  });
}

/**
 * Waits two turns of the event loop before a run's execution starts, so the
 * call that started it (SendInput, a decided approval, the run queued
 * behind) has sent its whole response first. Node's HTTP/2 server sends a
 * unary response's header and message in the check phase after the
 * handler, and submits its trailers from a setImmediate queued then (the
 * server flushes them right after: server.ts, closeEndedStream). A run
 * launched by the handler and waiting one turn would run first in that
 * check phase; its first steps (committing the user message, building and
 * sending the provider request: a millisecond or two of CPU) used to run
 * before the trailers, so every caller waited for them. Measured with a
 * raw HTTP/2 client on the idle 2-core VM, SendInput's response complete:
 * p50 3.1–3.2 ms before, 1.5 ms after (GetWorker: 1.5 ms); one turn was not
 * enough (the trailers still waited). Under ten floods, SendInput's p99
 * fell from 35–50 ms to 23–26 ms and the runtime's loop blocks shortened;
 * a run's first token comes two turns later (2–8 ms under that load,
 * microseconds when idle).
 */
function afterCallersResponse(): Promise<void> {
  return nextTurn().then(nextTurn);
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Executes one run on the backend: commits the user's message while the
 * backend starts (see input-commit.ts), hands the backend the run with its
 * worker, profile, capabilities, workspace and a bounded transcript reader,
 * and turns whatever happens into an outcome. A resumed run commits nothing
 * first: its input is already in the transcript. Never throws: a cancelled
 * run is "cancelled" whatever the backend did, typed errors keep their
 * reason, store failures (the input's write included) become
 * STORE_UNAVAILABLE and anything else INTERNAL (its text only in the log).
 */
export async function executeRun(
  active: ActiveRun,
  sink: RunSink,
  worker: Worker,
  transcriptSeqs: { readonly lastTranscriptSeq: bigint; readonly assignedTranscriptSeq: bigint },
  deps: SessionDeps,
  traceContext: Context,
  resumed?: ResumeInit,
): Promise<RunOutcome> {
  const { run, controller } = active;
  const workerId = worker.ref?.workerId ?? "";
  // Every line of the run names it, the call that started it (its request id) and, when traced, the run's span.
  const logger = childLogger(deps.logger, { ...active.logFields, worker_id: workerId, run_id: run.runId, ...traceLogFields(traceContext) });
  // The backend's signal: the run's, or a failed write of its input.
  const execution = new AbortController();
  const followRun = (): void => execution.abort(controller.signal.reason);
  if (controller.signal.aborted) followRun();
  else controller.signal.addEventListener("abort", followRun, { once: true });
  let input: InputCommit | undefined;
  let outcome: RunOutcome;
  try {
    if (resumed) await resumed.recorded;
    else
      input = new InputCommit(
        sink,
        run.input?.text ?? "",
        () => transcriptSeqs.assignedTranscriptSeq,
        (error) => execution.abort(error),
      );
    const backend = deps.backend;
    if (!backend) throw new RuntimeError(Code.FailedPrecondition, ErrorReason.WORKER_NOT_CONNECTED, "no execution backend");
    if (controller.signal.aborted) throw abortError();
    const workspace = deps.workspaceDirOf(worker);
    const policy = deps.policyOf(worker);
    outcome = await backend.execute(
      {
        worker: cloneMessage(WorkerSchema, worker),
        profile: deps.profileOf(worker),
        run: cloneMessage(RunSchema, run),
        capabilities: [...worker.capabilities],
        policy,
        readTranscript: async (beforeSeq, limit) => {
          // A read that reaches the input waits for it: the transcript it returns holds the input.
          // So does one up to the input while an entry before it is still being written (a parked
          // run's unrun result, a force-ended run's last commit): the input is written after it.
          const reaches = beforeSeq === undefined || beforeSeq > transcriptSeqs.lastTranscriptSeq + 1n;
          if (input && reaches) await input.durable;
          return deps.store.readTranscript(
            workerId,
            { kind: "before", beforeSeq: beforeSeq ?? transcriptSeqs.lastTranscriptSeq + 1n },
            Math.min(limit, deps.limits.maxTranscriptRead),
          );
        },
        ...(input ? { inputSeq: input.seq } : {}),
        ...(workspace ? { workspaceDir: workspace.dir, workspaceRootDir: workspace.root, workspaceRootDirs: workspace.roots } : {}),
        ...(workspace?.mounts ? { mounts: workspace.mounts } : {}),
        ...(resumed ? { resume: { ...resumed.resume } } : {}),
        logger,
        traceContext,
      },
      input ? input.gate(sink) : sink,
      execution.signal,
    );
    // The run ends only once its input is durable (a backend that committed nothing did not wait for it).
    await input?.durable;
  } catch (error) {
    // Also when the backend threw before the input's write settled: a failed write is why the run failed.
    await input?.durable.catch(() => undefined);
    if (controller.signal.aborted) {
      outcome = { kind: "cancelled" };
    } else if (error instanceof RuntimeError) {
      outcome = { kind: "failed", reason: error.reason, message: error.message };
    } else if (input?.failed || isStoreWriteFailure(error)) {
      // A failed write of the input stopped the backend, whatever it made of that.
      outcome = { kind: "failed", reason: ErrorReason.STORE_UNAVAILABLE, message: "the runtime could not persist the run" };
    } else {
      logger.error("execution backend threw", errorLogFields(error));
      outcome = { kind: "failed", reason: ErrorReason.INTERNAL, message: "the execution backend failed unexpectedly" };
    }
  } finally {
    controller.signal.removeEventListener("abort", followRun);
  }
  if (controller.signal.aborted && outcome.kind !== "completed") outcome = { kind: "cancelled" };
  logger.debug?.("run executed", { outcome: outcome.kind });
  // A failure's message and metadata may be a provider's text: stored and copied, so made well formed.
  return withWellFormedStrings(outcome);
}

/** Sets a run's final status, stop reason and error from its outcome. */
export function endRun(run: Run, outcome: RunOutcome, interrupted: boolean, now: Date): void {
  run.pendingApproval = undefined;
  run.endedAt = timestampFromDate(now);
  switch (outcome.kind) {
    case "completed":
      run.status = RunStatus.COMPLETED;
      run.stopReason = outcome.stopReason;
      break;
    case "cancelled":
      run.status = interrupted ? RunStatus.INTERRUPTED : RunStatus.CANCELLED;
      run.stopReason = interrupted ? StopReason.INTERRUPTED_BY_RESTART : StopReason.CANCELLED;
      break;
    case "failed":
      run.status = RunStatus.FAILED;
      run.stopReason = StopReason.ERROR;
      // The message is cut, so that a run (and its event) always fits a message (limits.ts, RUN_RESERVE_BYTES).
      run.error = create(RunErrorSchema, {
        reason: outcome.reason,
        message: cutUtf8(outcome.message, MAX_RUN_ERROR_MESSAGE_BYTES),
        metadata: outcome.metadata ?? {},
      });
      break;
  }
}

/** Waits for `done`, but at most `ms` (a cancelled run's grace period). */
export async function settledWithin(done: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  await Promise.race([done, grace]);
  clearTimeout(timer);
}
