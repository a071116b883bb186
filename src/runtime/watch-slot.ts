import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RuntimeError } from "./errors.js";
import type { DurableEventStream } from "./event-stream.js";
import type { WorkerSession } from "./worker-session.js";

/**
 * A worker's event stream for one more watcher, or LIMIT_EXCEEDED when it
 * has `maxWatchers` already. `permanent` throws a cause that outranks full
 * slots (a StreamInput to a stopped worker).
 */
export function watchSlot(
  session: WorkerSession,
  maxWatchers: number,
  permanent?: (worker: WorkerSession["worker"]) => void,
): DurableEventStream<WorkerEvent> {
  const watchers = session.events.subscriberCount;
  if (watchers >= maxWatchers) {
    permanent?.(session.worker);
    const message = `worker ${session.workerId} already has ${watchers} watchers`;
    throw new RuntimeError(Code.ResourceExhausted, ErrorReason.LIMIT_EXCEEDED, message, { limit: String(maxWatchers) });
  }
  return session.events;
}
