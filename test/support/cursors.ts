import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import type { Clients } from "./harness.js";

/**
 * A cursor of the same stream as `cursor`, positioned after event `seq`.
 * Clients treat cursors as opaque; tests know the format (see
 * src/runtime/cursor.ts) to resume from a chosen point, e.g. the start.
 */
export function cursorAt(cursor: string, seq: bigint): string {
  const dot = cursor.lastIndexOf(".");
  if (dot < 0) throw new Error(`not a cursor: ${cursor}`);
  return `${cursor.slice(0, dot + 1)}${seq.toString(36)}`;
}

/** The snapshot cursor of a worker's stream, read by a short WatchWorker. */
export async function workerCursor(clients: Clients, worker: WorkerRef | undefined): Promise<string> {
  for await (const message of clients.observation.watchWorker({ worker })) {
    if (message.snapshot) return message.snapshot.cursor;
  }
  throw new Error("WatchWorker ended without a snapshot");
}

/** The snapshot cursor of the runtime-wide stream, read by a short WatchRuntime. */
export async function runtimeCursor(clients: Clients, runtimeId: string): Promise<string> {
  for await (const message of clients.observation.watchRuntime({ runtimeId })) {
    if (message.snapshot) return message.snapshot.cursor;
  }
  throw new Error("WatchRuntime ended without a snapshot");
}
