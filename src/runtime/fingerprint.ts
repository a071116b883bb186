import { createHash } from "node:crypto";

/**
 * The fingerprint that makes a repeated request_id safe: the same id with
 * the same input is a retry, with other input a conflict. Stores keep it so
 * idempotency survives restarts.
 */
export function inputFingerprint(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
