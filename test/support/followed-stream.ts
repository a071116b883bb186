import { ConnectError } from "@connectrpc/connect";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";

/** A stream read on in the background: its events as they come, and how it ended. */
export interface Followed {
  events: WorkerEvent[];
  ended: Promise<ConnectError | "clean">;
}

/** Reads `stream` in the background, keeping its events and how it ended (a clean end, or its error). */
export function follow(stream: AsyncIterable<{ events: WorkerEvent[] }>): Followed {
  const events: WorkerEvent[] = [];
  const ended = (async () => {
    try {
      for await (const message of stream) events.push(...message.events);
      return "clean" as const;
    } catch (error) {
      return ConnectError.from(error);
    }
  })();
  return { events, ended };
}

/** Whether a followed stream has seen a text delta yet. */
export const sawText = (followed: Followed): boolean => followed.events.some((event) => event.kind.case === "textDelta");
