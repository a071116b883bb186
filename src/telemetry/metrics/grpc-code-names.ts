import { ConnectError } from "@connectrpc/connect";

/**
 * gRPC's canonical status code names by code number (0 = OK), as the RPC
 * semantic conventions label them; connect-es only has its own lower-case
 * names.
 */
export const GRPC_CODE_NAMES: readonly string[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** The gRPC code name an error ends a call with (connect-es's mapping: a non-Connect error is UNKNOWN). */
export function codeNameOf(error: unknown): string {
  return GRPC_CODE_NAMES[ConnectError.from(error).code] ?? "UNKNOWN";
}
