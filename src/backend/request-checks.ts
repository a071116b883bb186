import { checkId, RuntimeError } from "../runtime/index.js";
import { backendError } from "./backend-errors.js";

/**
 * The request fields a Backend acts on before any Runtime sees them — the
 * runtime id it routes by — checked by
 * the Runtime's own rules and answered with the Runtime's own typed errors,
 * so a client sees the same refusal through a Backend as direct. Without
 * this a malformed id was NOT_FOUND, echoing it.
 */

/** A runtime id the Backend routes by: required, and of the Runtime's id shape (INVALID_ARGUMENT naming `field`). */
export function checkRoutedRuntimeId(field: string, runtimeId: string): string {
  return asConnect(() => checkId(field, runtimeId));
}

/** Runs a Runtime check, turning its RuntimeError into the ConnectError a Backend handler throws. */
function asConnect<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (!(error instanceof RuntimeError)) throw error;
    throw backendError(error.code, error.reason, error.message, error.metadata);
  }
}
