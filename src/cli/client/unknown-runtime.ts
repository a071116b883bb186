import { Code, type ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../../../gen/worker_runtime/v1/errors_pb.js";
import { typedError } from "./typed-error.js";

/** Most runtime ids the sentence names (a Backend may hold many); then how many more. */
const NAMED_RUNTIMES_MAX = 20;

/**
 * The one sentence for a --runtime the server does not have, whichever
 * command met it: NOT_FOUND (exit 5), naming the runtimes it has so the
 * user sees what to type. `runtime info` finds it in the server's list; the
 * other commands learn it from the server's refusal ({@link namesUnknownRuntime}).
 */
export function unknownRuntime(runtimeId: string, known: readonly string[]): ConnectError {
  const named = known.slice(0, NAMED_RUNTIMES_MAX).join(", ") || "none";
  const more = known.length > NAMED_RUNTIMES_MAX ? ` and ${known.length - NAMED_RUNTIMES_MAX} more` : "";
  // Quoted as JSON: what the user typed may hold control characters, and it is bounded as the server bounds ids.
  const shown = JSON.stringify(runtimeId.slice(0, 64));
  return typedError(Code.NotFound, ErrorReason.NOT_FOUND, `--runtime ${shown} is not a runtime of this server (it has ${named}${more})`, {
    runtime_id: runtimeId.slice(0, 64),
  });
}

/**
 * Whether the server refused the call because --runtime (`given`) is not
 * one of its runtimes: a runtime's RUNTIME_MISMATCH (it is another
 * runtime), or a Backend's NOT_FOUND about that runtime alone (no worker,
 * run or bundle named beside it). Each words it its own way; the client
 * prints {@link unknownRuntime} for both.
 */
export function namesUnknownRuntime(error: ConnectError, given: string): boolean {
  const detail = error.findDetails(ErrorDetailSchema)[0];
  if (detail === undefined) return false;
  if (detail.reason === ErrorReason.RUNTIME_MISMATCH) return true;
  const keys = Object.keys(detail.metadata);
  return detail.reason === ErrorReason.NOT_FOUND && keys.length === 1 && detail.metadata.runtime_id === given;
}
