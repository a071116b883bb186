import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError } from "./errors.js";

/**
 * A watch opened at its first next(), as an async generator runs its body:
 * a bad request (a missing runtime_id, a bad cursor) fails there, not at
 * the call, so an embedder that calls first and catches around next()
 * sees it; a watch returned before its first next() never takes a
 * subscription; and a runtime closed by then refuses it (RUNTIME_DRAINING,
 * as requests after close are) instead of serving a snapshot and a
 * heartbeat for ever to a stream nothing will end, which kept an embedding
 * process alive. A watch opened before close() is ended by it.
 */
export async function* openOnFirstNext<T>(runtime: { readonly closed: boolean }, open: () => AsyncGenerator<T>): AsyncGenerator<T> {
  if (runtime.closed) throw new RuntimeError(Code.Unavailable, ErrorReason.RUNTIME_DRAINING, "the runtime is closed and opens no watches");
  yield* open();
}
