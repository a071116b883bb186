import { createHash } from "node:crypto";
import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";

/**
 * The fingerprint that makes a repeated request_id safe: the same id with
 * the same input is a retry, with other input a conflict. Stores keep it so
 * idempotency survives restarts.
 */
export function inputFingerprint(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * What the core stores with a run for its request id (see `PutRunInit`):
 * the input's fingerprint, or "" when the run has no request id.
 */
export function requestFingerprint(run: Run): string {
  return run.requestId === "" ? "" : inputFingerprint(run.input?.text ?? "");
}
