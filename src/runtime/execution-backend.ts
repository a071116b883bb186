import type { Context } from "@opentelemetry/api";
import type { Usage } from "../../gen/worker_runtime/v1/common_pb.js";
import type { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import type { Run, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import type { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import type { TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { Logger } from "./logger.js";
import type { RuntimeMetrics } from "./metrics.js";
import type { HostLookups } from "./unanswered-lookups.js";

/**
 * The seam between a Worker and whatever executes its runs (SPEC §6.1).
 * The Runtime asks the backend to run one input with an AbortSignal and a
 * sink; the backend streams deltas, commits transcript entries and usage
 * through the sink, and returns a typed outcome. The Runtime never produces
 * assistant output itself: without a backend, input is refused.
 */
export interface ExecutionBackend {
  /** Short name shown in the runtime summary, e.g. "openai". */
  readonly name: string;
  /**
   * Whether runs can execute at all. When not available, Workers are
   * NOT_CONNECTED with `reason`, which must say what to configure.
   */
  availability(): BackendAvailability;
  /**
   * Whether runs of this profile can execute with these host secrets (the
   * ones it names), asked only when {@link availability} says no: a config
   * bundle profile that brings its own provider key
   * (`provider_api_key_secret`) can run where the runtime has none. Absent:
   * the runtime-wide answer stands for every worker.
   */
  availabilityFor?(profile: Profile, secrets: ReadonlyMap<string, string>): BackendAvailability;
  /** Profiles this backend can run, by name (the builtin "companion" first). */
  profiles(): Profile[];
  /** Tool capabilities this backend can grant, e.g. "fs.read". */
  toolCapabilities(): string[];
  /**
   * Executes one run. Must return promptly once `signal` aborts (the Runtime
   * then ends the run CANCELLED). Output already committed stays committed.
   * Throwing is treated as an INTERNAL failure; expected failures should be
   * returned as `{ kind: "failed" }` with a typed reason.
   */
  execute(request: RunRequest, sink: RunSink, signal: AbortSignal): Promise<RunOutcome>;
  /**
   * Called once by the Runtime the backend is plugged into, before any run:
   * hands it the Runtime's diagnostics and logger, so that problems outside
   * any one run (a provider that rejects the key or is down) reach
   * `ListDiagnostics` and the log.
   */
  attach?(host: BackendHost): void;
  /**
   * Settles once the backend's start-up checks that ask the host's file
   * system (which may hang: a network mount) are done, off the event loop.
   * createRuntime awaits it before anything is opened, and a rejection
   * refuses the runtime with that error. Absent: nothing to wait for.
   * `host` is the runtime's own lookups and `limits.hostPathTimeoutMs`: a
   * backend asks the host's file system through them, from then on, so
   * the operator's timeout and one bound on unanswered lookups hold for
   * the engine's lookups too.
   */
  ready?(host: HostLookups): Promise<void>;
  /**
   * How shell.exec commands are isolated, for GetRuntime
   * (`RuntimeCapabilities.shell_sandbox`): e.g. "bubblewrap", "none"; ""
   * when shell.exec is not offered.
   */
  shellSandbox?(): string;
  /**
   * Which of these program names (a config bundle's
   * `shell.allowed_programs`) a shell.exec command could not start on this
   * host, each with why (not installed, not executable, its interpreter or
   * loader missing, ...). CreateWorker refuses to grant shell.exec under a
   * policy that allows one (PROGRAM_NOT_FOUND, saying why): the operator
   * learns of it when the worker is made, not when the model first calls
   * it. Asking the host's file system may hang (a network mount on PATH):
   * answer asynchronously, within the lookups handed over at {@link ready};
   * a program not checked in time is {@link PROGRAM_CHECK_UNANSWERED}.
   * Absent: not checked.
   */
  programProblems?(programs: readonly string[]): ProgramProblem[] | Promise<ProgramProblem[]>;
  /**
   * @deprecated Implement {@link programProblems}. Asked only when that is
   * absent (each name returned is refused as not installed), so a backend
   * written before it keeps its programs checked.
   */
  missingPrograms?(programs: readonly string[]): string[];
  /** Bounds the backend enforces on runs, reported in `GetRuntime.limits`. */
  limits?(): ExecutionLimits;
  /**
   * Where this backend's tools end up when they open the host directory
   * `dir` (absolute), which may not exist yet: symlinks resolved. The
   * Runtime refuses workspace roots that overlap there and compares write
   * leases there, so two names for one directory never both write it.
   * Absent: `dir` as written. Asking the host's file system may hang (a
   * network mount): answer asynchronously, and the Runtime waits at most
   * `limits.hostPathTimeoutMs` for it (then refuses the CreateWorker with
   * HOST_PATH_UNAVAILABLE), never blocking its event loop.
   */
  hostPath?(dir: string): string | Promise<string>;
}

/**
 * ProgramProblem.cause of a program a backend could not check: a
 * directory it is looked up in did not answer in time (a hung network
 * mount). CreateWorker is then refused UNAVAILABLE HOST_PATH_UNAVAILABLE,
 * to be tried again, not PROGRAM_NOT_FOUND: the program may well be there.
 */
export const PROGRAM_CHECK_UNANSWERED = "host_unanswered";

/** An allowed program a backend cannot start (ExecutionBackend.programProblems). */
export interface ProgramProblem {
  program: string;
  /** A stable word for why, given to clients as ErrorDetail metadata "cause" ("not_installed" when the host lacks it). */
  cause: string;
  /** Why, in plain words naming the program, never a private host path. */
  message: string;
}

/** What the Runtime gives a backend it hosts. */
export interface BackendHost {
  diagnostics: DiagnosticsReporter;
  logger: Logger;
  /** Where provider calls are counted (duration, time to first chunk, tokens); absent = nowhere. */
  metrics?: RuntimeMetrics;
}

/**
 * Where a backend records problems an operator should see. A problem is
 * keyed by its stable code, so one that recurs is one diagnostic with a
 * count and a last-seen time, not one per occurrence.
 */
export interface DiagnosticsReporter {
  /** Records `code`, or counts it again and refreshes its severity, message and last-seen time. */
  report(problem: { severity: DiagnosticSeverity; code: string; message: string }): void;
  /** Removes the diagnostics with these codes: the problem is over. */
  clear(codes: readonly string[]): void;
}

/** Bounds of an execution backend (SPEC §2.7: every bound is documented). */
export interface ExecutionLimits {
  /** Longest silence between two provider stream events before the stream counts as cut. */
  streamIdleTimeoutMs: number;
  /** Largest answer plus reasoning of one model turn, in UTF-8 bytes. */
  maxAnswerBytes: number;
  /** Total time one run may spend retrying failed model requests. */
  retryBudgetMs: number;
}

/** Whether a backend can run input. */
export type BackendAvailability = { available: true } | { available: false; reason: string };

/** One of a worker's mounts as a run sees it (MountSpec in worker.proto); host paths, never sent to clients. */
export interface RunMount {
  /** Seen at /mounts/<name>. */
  name: string;
  /** Whether tools may change files in it. */
  writable: boolean;
  /** Host directory of the mount; unset when its root is no longer configured (the run must fail, not run without it). */
  dir?: string;
  /** Host directory of its root, where the mount must stay (as `workspaceRootDir`). */
  rootDir?: string;
}

/** Everything a backend needs to execute one run. */
export interface RunRequest {
  /** The worker, as it is when the run starts. */
  worker: Worker;
  /** The resolved profile. */
  profile: Profile;
  /** The run being executed (its input is `run.input`). */
  run: Run;
  /** Host directory of the worker's workspace, if it has one. Never sent to clients. */
  workspaceDir?: string;
  /**
   * Host directory of the workspace's root (`--workspace-root`), with
   * `workspaceDir`: the workspace must resolve inside it, since a symlink
   * planted under the root (by an earlier command) could lead it anywhere.
   */
  workspaceRootDir?: string;
  /**
   * Host directories of every workspace root of the runtime (the worker's own
   * among them), with `workspaceDir`: other workers' workspaces live under
   * them, so a backend that lets commands see the host must hide them all,
   * whether or not its own configuration names them.
   */
  workspaceRootDirs?: readonly string[];
  /**
   * The worker's mounts (Worker.mounts), with `workspaceDir`: file tools
   * reach each under /mounts/<name>, sandboxed commands see it there. Each
   * directory is made, like the workspace, inside its root's real path.
   */
  mounts?: readonly RunMount[];
  /** Capabilities granted to the worker. */
  capabilities: readonly string[];
  /**
   * Host secrets the profile names, by name, and the shell policy of a
   * config bundle's profile. A backend must never put a secret's value in
   * an entry, event, error or log line.
   */
  policy?: RunPolicy;
  /**
   * Reads the committed transcript, oldest first, the `limit` newest entries
   * before `beforeSeq` (undefined = the tail). Bounded like every read. A
   * read that reaches the run's input ({@link inputSeq}) waits until it is
   * durable, so it returns the input too.
   */
  readTranscript(beforeSeq: bigint | undefined, limit: number): Promise<TranscriptEntry[]>;
  /**
   * Transcript seq of the run's input entry, set for a fresh run: the
   * Runtime commits the input while the execution starts, not before it.
   * `readTranscript(inputSeq, limit)` reads the history before the input
   * without waiting for its write (unless an entry before it is still being
   * written: then it waits, and the history is whole), so a backend can send
   * its model request meanwhile, with the input from `run.input`. Whatever
   * the backend makes durable (entries, an approval wait) is written after
   * the input, so a `commit` waits for it (one not awaited can reach
   * watchers after deltas sent later). If the input cannot be written,
   * `signal` aborts with the store's error as its reason, later commits are
   * refused, and the run fails with STORE_UNAVAILABLE.
   */
  inputSeq?: bigint;
  /**
   * Set when this execution continues a run instead of starting it: the run
   * waited for a tool approval with no execution in memory (after a restart
   * or a shutdown, see run-slot.ts "parked") and a client has just decided.
   * The input and everything the run produced before are in the transcript
   * (the input is not committed again). The backend must continue from
   * there: run the tool calls of the run's last model turn that have no
   * result yet, in order, asking for approval as usual — the sink answers
   * the call named here at once with the recorded decision, whatever the
   * profile says now — and then go on with the model. A backend that cannot
   * resume returns a typed failure, never a fresh start.
   */
  resume?: RunResume;
  /**
   * The run's logger: the Runtime's, adding the run's `worker_id` and
   * `run_id` and the fields of the call that started it (its `request_id`).
   * A backend logs a run's lines through it, so one request id finds them.
   */
  logger?: Logger;
  /**
   * The run's trace context: its `invoke_agent` span, a child of the call
   * that sent its input. A backend's spans (model calls, tool calls) are its
   * children, and it is what a backend propagates to its provider. Passed
   * explicitly because the Runtime keeps no ambient async context (see
   * docs/architecture.md); with tracing off it holds no span.
   */
  traceContext?: Context;
}

/** What a run may use beyond its profile (see {@link RunRequest.policy}). */
export interface RunPolicy {
  /** Values of the secrets the profile names (`Profile.secret_names`), by name. */
  secrets: ReadonlyMap<string, string>;
  /**
   * Unset: commands are not restricted (builtin profiles). Set: a command
   * runs without a shell and only when its program is in `allowedPrograms`
   * (see ShellPolicy in profile.proto).
   */
  shell?: { allowedPrograms: readonly string[] };
}

/** How a resumed execution continues (see {@link RunRequest.resume}). */
export interface RunResume {
  /** The tool call whose approval the run waited on and that was just decided. */
  toolCallId: string;
}

/**
 * Where a backend reports a run's output. Deltas are live (not durable);
 * `commit` makes an entry durable and returns it with its seq.
 * Calls after the run has ended throw `RunClosedError`.
 */
export interface RunSink {
  /** Appends assistant text to the in-flight block `blockId`. */
  textDelta(blockId: string, text: string): void;
  /** Appends reasoning text to the in-flight block `blockId`. */
  reasoningDelta(blockId: string, text: string): void;
  /** Appends to an in-flight tool call. */
  toolCallDelta(blockId: string, delta: ToolCallDeltaInit): void;
  /**
   * Abandons an in-flight block that will not be committed (e.g. a partial
   * tool call from a cut stream), so watchers and snapshots drop it.
   */
  discardBlock(blockId: string): void;
  /**
   * Commits a transcript entry; when it completes an in-flight block, pass
   * its `blockId` so watchers replace the partial block with it.
   */
  commit(content: TranscriptEntry["content"], blockId?: string): Promise<TranscriptEntry>;
  /**
   * Adds provider-reported token usage of one model request to the run.
   * Leave `modelRequests` out: `turn()` counts requests. A response that
   * reported no usage adds `unreportedRequests: 1n` and no made-up counts.
   */
  addUsage(usage: Partial<Omit<Usage, "$typeName" | "$unknown">>): void;
  /** Counts one model turn (request) for the run. */
  turn(): void;
  /**
   * Reports that a model request failed transiently and will be retried
   * after `delayMs`: watchers get a live `retry_scheduled` event and the run
   * counts it (`retries`, `last_retry`).
   */
  retry(retry: RetryInit): void;
  /**
   * Puts the run in AWAITING_APPROVAL with the pending call visible to
   * clients, and resolves with the client's decision. Rejects with an
   * AbortError when the run is cancelled while waiting. The wait is durable:
   * if the Runtime restarts meanwhile, this execution ends (its sink
   * closes) and the decision is given to a resumed one instead
   * ({@link RunRequest.resume}), which asks again and is answered at once.
   */
  requestApproval(call: PendingToolCall, signal: AbortSignal): Promise<ApprovalResult>;
}

/** A piece of a streaming tool call. */
export interface ToolCallDeltaInit {
  toolCallId?: string;
  toolName?: string;
  argumentsDelta?: string;
}

/** One retry of a model request. */
export interface RetryInit {
  /** Which retry of the run this is, from 1. */
  attempt: number;
  delayMs: number;
  /** Why the request failed (never holds credentials). */
  reason: string;
  /** The provider's HTTP status, when it answered. */
  httpStatus?: number;
  /** The network error code when it did not, e.g. "ECONNREFUSED". */
  cause?: string;
  /** What is left of the run's retry budget after the delay. */
  budgetRemainingMs: number;
}

/** A tool call waiting for approval. */
export interface PendingToolCall {
  toolCallId: string;
  toolName: string;
  argumentsJson: string;
}

/** A client's decision on a pending tool call. */
export interface ApprovalResult {
  approved: boolean;
  /** The client's reason (may be empty). */
  reason: string;
}

/** How a run ended, as the backend reports it. */
export type RunOutcome =
  | { kind: "completed"; stopReason: StopReason }
  | { kind: "failed"; reason: ErrorReason; message: string; metadata?: Record<string, string> }
  | { kind: "cancelled" };

/** Thrown by a RunSink used after its run has ended. */
export class RunClosedError extends Error {
  override readonly name = "RunClosedError";
}
