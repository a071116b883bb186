import { Code, type ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../../../gen/worker_runtime/v1/errors_pb.js";
import { describeBundleUnavailable } from "./bundle-unavailable.js";
import { isTransportFailure } from "./transport-failure.js";

/** The variable the client reads the token from (command-context.ts reads it; the sentences name it). */
export const TOKEN_ENV = "WORKER_RUNTIME_TOKEN";

/**
 * Exit codes of the client commands, one per kind of failure, so scripts
 * can tell "try again later" from "fix the command" without parsing text.
 */
export const ExitCode = {
  OK: 0,
  /** Anything not listed below (an internal error, a bug). */
  FAILURE: 1,
  /**
   * The command line is wrong, whoever found it: the client, or the server
   * refusing a value a flag or argument filled (INVALID_ARGUMENT about that
   * field: flag-names.ts, refusesCommandLine).
   */
  USAGE: 2,
  /** The server (or, through a Backend, the runtime) could not be reached, dropped the connection, or is draining. */
  UNREACHABLE: 3,
  /** The token is missing or wrong. */
  UNAUTHENTICATED: 4,
  /** The worker, run, runtime or profile does not exist. */
  NOT_FOUND: 5,
  /** The worker is busy with another run, or its queue is full. */
  BUSY: 6,
  /** The worker has no execution backend (for example no model provider). */
  NOT_CONNECTED: 7,
  /** The server refused the request for another typed reason (stopped worker, bad argument, ...). */
  REFUSED: 8,
  /** `send`: the run ended FAILED or INTERRUPTED. */
  RUN_FAILED: 9,
  /**
   * `transcript`: what could be read was printed, but the worker's stored
   * history is damaged and the rest of the transcript cannot be read.
   */
  TRANSCRIPT_CUT: 10,
  /** `send`: the run was cancelled (Ctrl-C), as a shell reports SIGINT. */
  CANCELLED: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit-code table every `--help` prints. */
export const EXIT_CODES_USAGE = `exit codes:
  0   success                      5   not found (worker, run, runtime, profile)
  1   unexpected failure           6   worker busy or queue full
  2   bad command line or value    7   worker not connected (no model provider)
  3   server unreachable/draining  8   refused for another typed reason
  4   unauthenticated              9   send: run failed or interrupted
  10  transcript: cut short by damage (the rest cannot be read)
  130 send: run cancelled (Ctrl-C)`;

/** The typed reason of a server error, if it carries our ErrorDetail. */
export function reasonOf(error: ConnectError): ErrorReason | undefined {
  return error.findDetails(ErrorDetailSchema)[0]?.reason;
}

/** Which exit code a failed call maps to. */
export function exitCodeFor(error: ConnectError): ExitCodeValue {
  switch (reasonOf(error)) {
    case ErrorReason.UNAUTHENTICATED:
      return ExitCode.UNAUTHENTICATED;
    case ErrorReason.NOT_FOUND:
    case ErrorReason.PROFILE_NOT_FOUND:
      return ExitCode.NOT_FOUND;
    case ErrorReason.WORKER_BUSY:
    case ErrorReason.QUEUE_FULL:
      return ExitCode.BUSY;
    case ErrorReason.WORKER_NOT_CONNECTED:
      return ExitCode.NOT_CONNECTED;
    case ErrorReason.RUNTIME_DRAINING:
    // A Backend's runtime that is away: try again later, as with the server itself.
    case ErrorReason.RUNTIME_UNAVAILABLE:
      return ExitCode.UNREACHABLE;
    case undefined:
    case ErrorReason.UNSPECIFIED:
      return exitCodeForCode(error.code);
    default:
      return ExitCode.REFUSED;
  }
}

/** Errors without our detail: transport failures, auth interceptors, proxies. */
function exitCodeForCode(code: Code): ExitCodeValue {
  switch (code) {
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    // The client's own aborts (Ctrl-C) are handled where they happen; this is the connection dropping.
    case Code.Canceled:
      return ExitCode.UNREACHABLE;
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return ExitCode.UNAUTHENTICATED;
    case Code.NotFound:
      return ExitCode.NOT_FOUND;
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.AlreadyExists:
    case Code.OutOfRange:
    case Code.ResourceExhausted:
      return ExitCode.REFUSED;
    default:
      return ExitCode.FAILURE;
  }
}

/**
 * One plain sentence plus the reason: the server's message (written to be
 * shown to callers) and the ErrorDetail reason, or the status code's name
 * when the error carries no detail (for example a refused connection).
 * Reasons whose way out is the client user's own (an unreachable server, a
 * missing or refused token, a bundle that cannot be served) get the
 * client's words instead. `tokenSource` says where the token sent came
 * from (undefined: none was sent).
 */
export function describeError(error: ConnectError, server: string, tokenSource?: string): string {
  const reason = reasonOf(error);
  const label = reason !== undefined && reason !== ErrorReason.UNSPECIFIED ? ErrorReason[reason] : Code[error.code];
  const message = error.rawMessage || Code[error.code];
  if (isTransportFailure(error)) return `${message} (reason: ${label})`;
  if (reason === undefined && error.code === Code.Unavailable) return `cannot reach ${server}: ${message} (reason: ${label})`;
  if (reason === undefined && error.code === Code.Canceled) return `lost the connection to ${server}: ${message} (reason: ${label})`;
  if (reason === ErrorReason.UNAUTHENTICATED || (reason === undefined && error.code === Code.Unauthenticated)) {
    return `${tokenRefused(server, tokenSource)} (reason: ${label})`;
  }
  if (reason === ErrorReason.BUNDLE_UNAVAILABLE) {
    return `${describeBundleUnavailable(error.findDetails(ErrorDetailSchema)[0]?.metadata ?? {})} (reason: ${label})`;
  }
  return `${message} (reason: ${label})`;
}

/** What to do about a server that refused the call for its token. */
function tokenRefused(server: string, tokenSource: string | undefined): string {
  if (tokenSource === undefined) {
    return `${server} wants a bearer token: put it in a file and pass --token-file PATH, or set $${TOKEN_ENV}`;
  }
  return `${server} refused the token from ${tokenSource}: check that it is the token the server was started with`;
}
