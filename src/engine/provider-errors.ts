import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "openai";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { bounded } from "../runtime/index.js";
import { retryAfterMs } from "./retry.js";

/**
 * What a failed provider request means for the run. This is the one place
 * where provider errors are mapped to the typed reasons clients switch on.
 */
export type ProviderFailure =
  /** The run's signal aborted the request. */
  | { kind: "cancelled" }
  /**
   * Worth retrying (408/409/429/5xx, connection error, timeout). `cause` is
   * the network error code under a connection error ("ECONNREFUSED"), which
   * the SDK's own message ("Connection error.") hides.
   */
  | { kind: "retryable"; status: number | undefined; retryAfterMs: number | undefined; message: string; cause?: string }
  /** Retrying cannot help; the run fails at once. */
  | { kind: "fatal"; reason: ErrorReason; message: string; metadata: Record<string, string> };

/** What classifying a provider error needs to know about the provider (EngineSettings has both). */
export interface ProviderErrorContext {
  /** Redacted from every message: providers echo parts of bad keys in 401 bodies, and run errors are shown to clients. */
  readonly secrets: readonly string[];
  /** The provider's address, scheme://host:port ({@link providerAddress}), named when it cannot be reached. */
  readonly providerAddress: string;
}

/**
 * Classifies an error thrown while opening a provider request. A
 * connection error names the provider's address and what to check: the
 * SDK's own "Connection error." does not say where it tried.
 */
export function classifyProviderError(error: unknown, signal: AbortSignal, provider: ProviderErrorContext): ProviderFailure {
  const { secrets } = provider;
  if (signal.aborted || error instanceof APIUserAbortError) return { kind: "cancelled" };
  if (error instanceof APIConnectionError) {
    const cause = error instanceof APIConnectionTimeoutError ? "timeout" : networkCause(error);
    const message = redact(unreachable(error.message, cause, provider.providerAddress), secrets);
    return { kind: "retryable", status: undefined, retryAfterMs: undefined, message, ...(cause ? { cause } : {}) };
  }
  if (error instanceof APIError && error.status === undefined) return classifyStreamError(error, secrets);
  if (error instanceof APIError && typeof error.status === "number") {
    const status = error.status;
    const message = redact(`provider returned HTTP ${status}: ${providerMessage(error, secrets)}`, secrets);
    if (status === 408 || status === 409 || status === 429 || status >= 500) {
      return { kind: "retryable", status, retryAfterMs: retryAfterMs(error.headers), message };
    }
    const metadata = { http_status: String(status) };
    if (status === 401 || status === 403) return { kind: "fatal", reason: ErrorReason.PROVIDER_AUTH_FAILED, message, metadata };
    return { kind: "fatal", reason: ErrorReason.PROVIDER_REJECTED, message, metadata };
  }
  // Anything else (a fetch TypeError, a DNS failure surfaced oddly) is
  // treated as a connection problem: retrying is the safe default.
  const text = error instanceof Error ? error.message : String(error);
  const cause = networkCause(error);
  return {
    kind: "retryable",
    status: undefined,
    retryAfterMs: undefined,
    message: redact(unreachable(text, cause, provider.providerAddress), secrets),
    ...(cause ? { cause } : {}),
  };
}

/**
 * A connection error in words a user can act on: where the request went and
 * what to check, then the SDK's text and the network code.
 */
function unreachable(text: string, cause: string | undefined, address: string): string {
  const what = cause === "timeout" ? "did not answer in time" : "could not be reached";
  const detail = cause ? `${text} (${cause})` : text;
  return (
    `the model provider at ${address} ${what}: check that it is running and that OPENAI_BASE_URL names it ` +
    `(and that this host can reach it); ${detail}`
  );
}

/**
 * The part of a provider base URL that errors and logs may name:
 * scheme://host:port. Never the path, a query string (some proxies take a
 * key there) or credentials in the URL.
 */
export function providerAddress(baseURL: string): string {
  try {
    const url = new URL(baseURL);
    const port = url.port || (url.protocol === "https:" ? "443" : "80");
    return `${url.protocol}//${url.hostname}:${port}`;
  } catch {
    return "(an unreadable base URL)";
  }
}

/**
 * The first error code along an error's `cause` chain (Node's fetch wraps
 * the socket error: APIConnectionError → TypeError "fetch failed" → Error
 * with code ECONNREFUSED). Only the code is kept: the socket error's own
 * message names the provider's address.
 */
export function networkCause(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const code: unknown = Reflect.get(current, "code");
    if (typeof code === "string" && /^[A-Z][A-Z0-9_]+$/.test(code)) return code;
    const inner: unknown = current instanceof AggregateError ? current.errors[0] : undefined;
    current = current.cause ?? inner;
  }
  return undefined;
}

/**
 * An error object the provider sent inside an open stream (`data:
 * {"error": {...}}`), which has no HTTP status. Compatible servers put the
 * status they mean in `code` (vLLM), or name it in `type` (OpenAI) or in a
 * word-valued `code` (Groq); an error that names neither is assumed transient.
 */
function classifyStreamError(error: APIError, secrets: readonly string[]): ProviderFailure {
  const message = redact(`provider sent an error in the stream: ${providerMessage(error, secrets)}`, secrets);
  const body: unknown = error.error;
  const field = (name: string): unknown => (body && typeof body === "object" ? Reflect.get(body, name) : undefined);
  const code = Number(field("code"));
  // A `code` that is a word names the error as `type` does (Groq: type "tokens", code "rate_limit_exceeded").
  const type = `${String(field("type") ?? "")} ${Number.isNaN(code) ? String(field("code") ?? "") : ""}`;
  const status = Number.isInteger(code) && code >= 400 && code < 600 ? code : undefined;
  const metadata: Record<string, string> = status !== undefined ? { http_status: String(status) } : {};
  if (status === 401 || status === 403 || /auth|permission/i.test(type)) {
    return { kind: "fatal", reason: ErrorReason.PROVIDER_AUTH_FAILED, message, metadata };
  }
  if (status === 429 || /rate_limit/i.test(type)) return { kind: "retryable", status: 429, retryAfterMs: undefined, message };
  if ((status !== undefined && status < 500 && status !== 408 && status !== 409) || /invalid_request|BadRequest/i.test(type)) {
    return { kind: "fatal", reason: ErrorReason.PROVIDER_REJECTED, message, metadata };
  }
  return { kind: "retryable", status, retryAfterMs: undefined, message };
}

/**
 * The typed failure once the run's retry budget is spent, by the last error
 * seen; its metadata keeps the facts a client or operator acts on.
 */
export function exhaustedFailure(
  last: Extract<ProviderFailure, { kind: "retryable" }>,
  attempts: number,
): {
  reason: ErrorReason;
  message: string;
  metadata: Record<string, string>;
} {
  const reason = last.status === 429 ? ErrorReason.RATE_LIMITED : ErrorReason.PROVIDER_UNAVAILABLE;
  const metadata: Record<string, string> = { attempts: String(attempts) };
  if (last.status !== undefined) metadata["http_status"] = String(last.status);
  if (last.cause !== undefined) metadata["cause"] = last.cause;
  if (last.retryAfterMs !== undefined) metadata["retry_after_ms"] = String(last.retryAfterMs);
  // A provider's Retry-After longer than what the budget had left is why a run gives up after one attempt: say so.
  const asked = last.retryAfterMs !== undefined ? ` (the provider asked to wait ${last.retryAfterMs / 1000} s)` : "";
  const tries = attempts === 1 ? "1 attempt" : `${attempts} attempts`;
  return { reason, message: `gave up after ${tries} within the run's retry budget${asked}; last error: ${last.message}`, metadata };
}

/**
 * The provider's own words about an error: the error object's `message`,
 * or the error itself when a server sends it as a string (`{"error":
 * "..."}`, LiteLLM and some proxies; it used to read "no error message").
 * Secrets are redacted before the text is cut to
 * {@link MAX_PROVIDER_MESSAGE_CHARS}, so a cut cannot leave part of a key.
 */
function providerMessage(error: APIError, secrets: readonly string[]): string {
  const body: unknown = error.error;
  const message: unknown = typeof body === "string" ? body : body && typeof body === "object" ? Reflect.get(body, "message") : undefined;
  if (typeof message !== "string" || message === "") return "no error message";
  return bounded(redact(message, secrets), MAX_PROVIDER_MESSAGE_CHARS);
}

/**
 * The longest provider error text a run keeps. A provider's message can be
 * any length (some echo the whole prompt); it becomes the run's error, each
 * retry's reason (kept in the run as `last_retry`) and a diagnostic, so it
 * is cut here, where it enters the runtime.
 */
export const MAX_PROVIDER_MESSAGE_CHARS = 1_000;

/**
 * Removes secrets and anything shaped like an OpenAI key from text that may
 * reach clients or logs.
 */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join("[redacted]");
  }
  return out.replace(/\bsk-[A-Za-z0-9_*-]{4,}/g, "[redacted]");
}

/**
 * Whether an error thrown while reading an open stream means the connection
 * was lost (the answer so far is kept and continued): the SDK's connection
 * errors, aborts, and fetch's network TypeErrors ("terminated" when the
 * socket closes mid-body). Anything else is not a cut.
 */
export function isStreamCut(error: unknown): boolean {
  if (error instanceof APIConnectionError || error instanceof APIUserAbortError) return true;
  if (!(error instanceof Error)) return false;
  if (error.name === "AbortError") return true;
  return error instanceof TypeError && (error.message === "terminated" || error.cause instanceof Error);
}
