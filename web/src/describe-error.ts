import { Code, ConnectError } from "@connectrpc/connect";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { type Worker, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";

/** Where to look when the model provider is missing: said the same way everywhere in the console. */
export const PROVIDER_HINT =
  "Set OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible server, e.g. with --openai-keyless) and restart npm start.";

/**
 * Why a FAILED worker takes no more messages, and what can be done: said on
 * opening it and when a message to it is refused. The runtime's own message
 * is written for API clients; which file is damaged, and how, is for
 * operators (`runtime diagnostics`, and the runtime's log).
 */
export const FAILED_WORKER_TEXT =
  "This worker's stored history was found damaged, so it was set aside and takes no more messages. " +
  "An operator can inspect it (worker-runtime workers get) or delete it (worker-runtime workers delete); " +
  "to go on chatting, create a new companion.";

/** Why a STOPPED worker takes no more messages: said on opening it and when a message to it is refused. */
export const STOPPED_WORKER_TEXT = "This worker has been stopped and takes no more messages. Create a new companion.";

/**
 * A message refused because a run is in progress (WORKER_BUSY: the console
 * sends with busy policy REJECT, as the spec's default). Says that it was not
 * sent nor queued, and that nothing typed is lost: "still answering" alone
 * left the reader guessing whether it would be answered later.
 */
export const BUSY_TEXT =
  "Not sent: the worker is still answering the previous message, and messages are not queued. " +
  "Your message is kept in the box: send it once the answer is done, or press Stop.";

/**
 * The same refusal while the run waits for the reader's approval of a tool
 * call: "still answering" sent the reader to wait for a run that was
 * waiting for them.
 */
export const AWAITING_APPROVAL_TEXT =
  "Not sent: the worker is waiting for you to approve or reject its tool call, and takes one message at a time. " +
  "Your message is kept in the box: send it once the answer is done, or press Stop.";

/** The message box closed for a worker deleted while its chat was open (its watch ended NOT_FOUND). */
export const DELETED_WORKER = { note: "This worker no longer exists.", placeholder: "This worker no longer exists." };

/**
 * The message box closed for a worker the chat never found (a mistyped or
 * stale address): "no longer exists" claimed it had existed.
 */
export function notFoundWorker(ref: WorkerRef): { note: string; placeholder: string } {
  return {
    note: `Worker "${ref.workerId}" was not found on runtime "${ref.runtimeId}". Pick a worker in the list, or create a new companion.`,
    placeholder: "This worker was not found.",
  };
}

/** The typed reason of an error from the Backend, if it carries our ErrorDetail. */
export function reasonOf(error: unknown): ErrorReason | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  return error.findDetails(ErrorDetailSchema)[0]?.reason;
}

/**
 * The run a WORKER_BUSY refusal was about (the runtime's `active_run_id`;
 * "" if it names none), or undefined for any other error: the chat compares
 * it with the runs its watch has seen end, since the refusal may reach the
 * page after the run did.
 */
export function busyRunOf(error: unknown): string | undefined {
  if (reasonOf(error) !== ErrorReason.WORKER_BUSY || !(error instanceof ConnectError)) return undefined;
  return error.findDetails(ErrorDetailSchema)[0]?.metadata["active_run_id"] ?? "";
}

/**
 * A call that found no server (the Backend stopped or restarting, the
 * network). The chat takes it back once its watch reaches the server again.
 */
export const UNREACHABLE_TEXT = "Cannot reach the console's server. Is npm start still running?";

/** An error as a sentence a person can act on, from its typed reason rather than its code. */
export function describeError(error: unknown): string {
  const connectError = ConnectError.from(error);
  switch (reasonOf(error)) {
    case ErrorReason.WORKER_NOT_CONNECTED:
      return `Not sent: no model provider is connected. ${PROVIDER_HINT}`;
    case ErrorReason.WORKER_BUSY:
      return BUSY_TEXT;
    case ErrorReason.QUEUE_FULL:
      return "The worker has too many messages waiting. Try again once it has answered.";
    case ErrorReason.WORKER_STOPPED:
      return STOPPED_WORKER_TEXT;
    case ErrorReason.WORKER_FAILED:
      return FAILED_WORKER_TEXT;
    case ErrorReason.RUNTIME_UNAVAILABLE:
      return "The runtime hosting this worker is not reachable right now. The Backend keeps reconnecting; try again shortly.";
    case ErrorReason.RUNTIME_DRAINING:
      return "The runtime is shutting down and takes no new work.";
    case ErrorReason.NOT_FOUND:
      return "This worker no longer exists.";
    case ErrorReason.LIMIT_EXCEEDED:
      return tooLongText(error) ?? connectError.rawMessage;
    case ErrorReason.UNAUTHENTICATED:
      return "The Backend refused the call: it needs its access token, entered in the sidebar.";
    case undefined:
      break;
    default:
      return connectError.rawMessage;
  }
  if (connectError.code === Code.Unavailable || connectError.code === Code.Unknown) return UNREACHABLE_TEXT;
  return connectError.rawMessage;
}

/**
 * A message over the runtime's input bound (LIMIT_EXCEEDED on
 * `input.text`), in words: the runtime's "input.text: is N bytes; at most M
 * allowed" is written for API clients. The limit is in UTF-8 bytes, as the
 * runtime counts; the box keeps the text (Composer).
 */
function tooLongText(error: unknown): string | undefined {
  const detail = error instanceof ConnectError ? error.findDetails(ErrorDetailSchema)[0] : undefined;
  if (detail?.metadata["field"] !== "input.text") return undefined;
  const limit = Number(detail.metadata["limit"]);
  const most = Number.isFinite(limit) ? `at most ${limit.toLocaleString("en-US")} bytes` : "a bounded size";
  return (
    `Not sent: the message is too long. This worker takes messages of ${most} ` +
    "(as many letters of plain English text, fewer of other scripts). It is kept in the box: shorten it, or send it in parts."
  );
}

/**
 * The watch's cursor can no longer be resumed from, only a fresh snapshot can
 * help: older than the retained events (CURSOR_EXPIRED, OUT_OF_RANGE), of
 * another store (CURSOR_FOREIGN), or ahead of the worker's events, as after
 * the data dir was restored from a backup (INVALID_ARGUMENT on after_cursor).
 * Retrying it would show "Reconnecting…" forever.
 */
export function cursorLost(error: unknown): boolean {
  if (!(error instanceof ConnectError)) return false;
  const detail = error.findDetails(ErrorDetailSchema)[0];
  return (
    error.code === Code.OutOfRange ||
    detail?.reason === ErrorReason.CURSOR_EXPIRED ||
    detail?.reason === ErrorReason.CURSOR_FOREIGN ||
    (detail?.reason === ErrorReason.INVALID_ARGUMENT && detail.metadata["field"] === "after_cursor")
  );
}

/** Why the worker takes no more messages, if it ended (stopped or failed). */
export function endedText(worker: Worker): string | undefined {
  if (worker.status === WorkerStatus.FAILED) return FAILED_WORKER_TEXT;
  if (worker.status === WorkerStatus.STOPPED) return STOPPED_WORKER_TEXT;
  return undefined;
}

/**
 * A watch's failure that a new connection can mend (the Backend restarting,
 * the network, a runtime the Backend cannot reach), shown as
 * "Reconnecting…"; any other is a refusal, whose reason the chat shows
 * ({@link watchRefusedText}).
 */
export function connectionLost(error: unknown): boolean {
  const code = ConnectError.from(error).code;
  return (
    code === Code.Unavailable || code === Code.Unknown || code === Code.DeadlineExceeded || code === Code.Aborted || code === Code.Canceled
  );
}

/**
 * Why a chat's watch was refused, in words: the token form's hint for a
 * missing token, else the server's own message (shown as text), since only
 * it names the cause (e.g. "worker W already has 256 watchers").
 */
export function watchRefusedText(error: unknown): string {
  if (reasonOf(error) === ErrorReason.UNAUTHENTICATED) return describeError(error);
  const connectError = ConnectError.from(error);
  const said = connectError.rawMessage || Code[connectError.code];
  return `The server refused to send this worker's updates: ${said}. Trying again from time to time.`;
}
