import { create } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { InFlightBlockKind, WorkerEventSchema, type InFlightBlock, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import type { WatchWorkerResponse } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { InFlightAccumulator, TERMINAL_RUN_STATUSES } from "../../src/runtime/in-flight.js";
import { expect } from "vitest";
import type { Clients } from "../support/harness.js";

/** What a WatchWorker shows: its snapshot with every event after it applied, as a client renders it. */
export interface WorkerView {
  worker: Worker | undefined;
  /** Runs not ended, by id. */
  runs: Map<string, Run>;
  inFlight: InFlightBlock[];
}

/**
 * A WatchWorker read in the background: every message kept, and how the
 * stream ended (undefined while it runs, "clean", or its ConnectError).
 */
export class WorkerWatchReader {
  readonly messages: WatchWorkerResponse[] = [];
  ended: ConnectError | "clean" | undefined;
  private readonly controller = new AbortController();

  constructor(from: Clients, worker: WorkerRef, afterCursor = "") {
    void (async () => {
      for await (const message of from.observation.watchWorker({ worker, afterCursor }, { signal: this.controller.signal })) {
        this.messages.push(message);
      }
      this.ended = "clean";
    })().catch((error: unknown) => {
      this.ended = ConnectError.from(error);
    });
  }

  /** Every event received, in order. */
  get events(): WorkerEvent[] {
    return this.messages.flatMap((message) => message.events);
  }

  /** The durable events received (seq > 0), in order. */
  get durable(): WorkerEvent[] {
    return this.events.filter((event) => event.seq > 0n);
  }

  /** Durable events arrive once each, in order, each with its own cursor. */
  expectDurableInOrder(what: string): void {
    const durable = this.durable;
    const first = durable[0]?.seq ?? 0n;
    expect(
      durable.map((event) => event.seq),
      what,
    ).toEqual(durable.map((_, i) => first + BigInt(i)));
    expect(new Set(durable.map((event) => event.cursor)).size, what).toBe(durable.length);
    expect(
      durable.every((event) => event.cursor !== ""),
      what,
    ).toBe(true);
  }

  /** The last durable cursor this stream told (an event's, a heartbeat's, or the snapshot's). */
  get lastCursor(): string {
    let cursor = this.messages[0]?.snapshot?.cursor ?? "";
    for (const message of this.messages) {
      for (const event of message.events) if (event.cursor) cursor = event.cursor;
      if (message.heartbeat?.cursor) cursor = message.heartbeat.cursor;
    }
    return cursor;
  }

  /** The view as of the messages received so far. */
  view(): WorkerView {
    const snapshot = this.messages[0]?.snapshot;
    const runs = new Map<string, Run>();
    const inFlight = new InFlightAccumulator();
    for (const run of [snapshot?.activeRun, ...(snapshot?.queuedRuns ?? [])]) if (run) runs.set(run.runId, run);
    for (const block of snapshot?.inFlight ?? []) inFlight.apply(asDelta(block));
    let worker = snapshot?.worker;
    for (const event of this.events) {
      inFlight.apply(event);
      if (event.kind.case === "workerChanged") worker = event.kind.value;
      if (event.kind.case === "runChanged") {
        if (TERMINAL_RUN_STATUSES.has(event.kind.value.status)) runs.delete(event.kind.value.runId);
        else runs.set(event.kind.value.runId, event.kind.value);
      }
    }
    return { worker, runs, inFlight: inFlight.snapshot() };
  }

  /** The text the stream showed being streamed: the snapshot's text blocks, then every text delta. */
  streamedText(): string {
    const fromSnapshot = (this.messages[0]?.snapshot?.inFlight ?? []).filter((b) => b.kind === InFlightBlockKind.TEXT).map((b) => b.text);
    const deltas = this.events.flatMap((event) => (event.kind.case === "textDelta" ? [event.kind.value.text] : []));
    return [...fromSnapshot, ...deltas].join("");
  }

  close(): void {
    this.controller.abort();
  }
}

/** A snapshot's in-flight block as the delta that built it. */
export function asDelta(block: InFlightBlock): WorkerEvent {
  const { runId, blockId, text } = block;
  switch (block.kind) {
    case InFlightBlockKind.REASONING:
      return create(WorkerEventSchema, { kind: { case: "reasoningDelta", value: { runId, blockId, text } } });
    case InFlightBlockKind.TOOL_CALL:
      return create(WorkerEventSchema, {
        kind: {
          case: "toolCallDelta",
          value: { runId, blockId, toolCallId: block.toolCallId, toolName: block.toolName, argumentsDelta: text },
        },
      });
    default:
      return create(WorkerEventSchema, { kind: { case: "textDelta", value: { runId, blockId, text } } });
  }
}
