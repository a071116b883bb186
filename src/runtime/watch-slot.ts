import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RuntimeError } from "./errors.js";
import type { Subscription } from "./subscription.js";
import type { WorkerSession } from "./worker-session.js";

/**
 * A subscription to a worker's event stream for one more watcher, or
 * LIMIT_EXCEEDED when it has `maxWatchers` already. StreamInput calls
 * (`for: "input"`) have a pool of the same size of their own, so watchers, which
 * any caller may open, can never refuse a worker its input path. `permanent`
 * throws a cause that outranks full slots (a StreamInput to a stopped worker).
 */
export function watchSlot(
  session: WorkerSession,
  maxWatchers: number,
  taker: { for: "watch" | "input"; permanent?: (worker: WorkerSession["worker"]) => void } = { for: "watch" },
): Subscription<WorkerEvent> {
  const { events } = session;
  const forInput = taker.for === "input";
  const inputs = events.inputSubscriberCount;
  const taken = forInput ? inputs : events.subscriberCount - inputs;
  if (taken >= maxWatchers) {
    taker.permanent?.(session.worker);
    const what = forInput ? "StreamInput streams" : "watchers";
    const message = `worker ${session.workerId} already has ${taken} ${what}`;
    throw new RuntimeError(Code.ResourceExhausted, ErrorReason.LIMIT_EXCEEDED, message, { limit: String(maxWatchers) });
  }
  return events.subscribe(forInput);
}
