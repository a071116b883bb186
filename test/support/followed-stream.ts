import { Code, ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";

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

/**
 * Checks how a followed stream of a worker deleted mid-run ended: the run's
 * CANCELLED reached it, then NOT_FOUND "worker W was deleted" with reason
 * NOT_FOUND and metadata worker_id.
 */
export async function expectEndedByDelete(followed: Followed, workerId: string): Promise<void> {
  const end = await followed.ended;
  expect(end).toBeInstanceOf(ConnectError);
  const error = end as ConnectError;
  expect([error.code, error.rawMessage]).toEqual([Code.NotFound, `worker ${workerId} was deleted`]);
  const detail = error.findDetails(ErrorDetailSchema)[0];
  expect(detail?.reason).toBe(ErrorReason.NOT_FOUND);
  expect(detail?.metadata).toEqual({ worker_id: workerId });
  // The run's end reached the stream before the error.
  const runEnds = followed.events.flatMap((event) => (event.kind.case === "runChanged" ? [event.kind.value.status] : []));
  expect(runEnds.at(-1)).toBe(RunStatus.CANCELLED);
}

/** Streams read in the background until the test or suite that opened them ends. */
export interface CollectedStreams {
  /** Opens a stream with an AbortSignal of its own and keeps every message it says, as it comes; a stream that fails just stops. */
  collect<T>(open: (signal: AbortSignal) => AsyncIterable<T>): T[];
  /** Aborts every stream collected so far; call it in the hook that ends them (afterEach or afterAll). */
  abortAll(): void;
}

/**
 * What watches were told while a test acts, message by message (their
 * snapshots and heartbeats too), for tests that poll those lists; each
 * stream is aborted by `abortAll()`, so none outlives the servers the
 * test closes after it.
 */
export function collectedStreams(): CollectedStreams {
  const streams: AbortController[] = [];
  return {
    collect<T>(open: (signal: AbortSignal) => AsyncIterable<T>): T[] {
      const seen: T[] = [];
      const controller = new AbortController();
      streams.push(controller);
      void (async () => {
        for await (const message of open(controller.signal)) seen.push(message);
      })().catch(() => undefined);
      return seen;
    },
    abortAll() {
      for (const stream of streams.splice(0)) stream.abort();
    },
  };
}
