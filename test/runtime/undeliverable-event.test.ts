import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { byteBounds, EVENT_RESERVE_BYTES, RESPONSE_RESERVE_BYTES, RUN_RESERVE_BYTES } from "../../src/runtime/limits.js";
import { expectError } from "../support/errors.js";
import { startHarness, type Clients, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A watch hands over only batches that fit one message (subscription.ts,
 * with message-budget.ts's ResponseBudget). The runtime's limits keep each
 * event within a message, with one combination left: a configured
 * `maxInputBytes` at its largest and a tool call awaiting approval whose
 * arguments take most of the in-flight bound make a run (its input and
 * its pending arguments) larger than a message. Its run_changed cannot be
 * sent: the watcher is told so by the runtime, RESOURCE_EXHAUSTED /
 * LIMIT_EXCEEDED with the event's size, before any message is built for
 * the transport to refuse.
 */
const MAX_MESSAGE_BYTES = 256 * 1024;
const INPUT_ROOM = MAX_MESSAGE_BYTES - RESPONSE_RESERVE_BYTES - EVENT_RESERVE_BYTES - RUN_RESERVE_BYTES;

describe("an event larger than one message", () => {
  let harness: Harness;
  let clients: Clients;
  let backend: ScriptedBackend;
  let worker: WorkerRef;

  beforeAll(async () => {
    backend = new ScriptedBackend();
    harness = await startHarness({
      executionBackend: backend,
      limits: { maxMessageBytes: MAX_MESSAGE_BYTES, maxInputBytes: INPUT_ROOM },
    });
    clients = harness.connect("grpc");
    const created = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
    worker = created.worker?.ref as WorkerRef;
  });
  afterAll(async () => {
    await harness.close();
  });

  it("ends a watcher with LIMIT_EXCEEDED, typed, when a run's input and pending arguments pass a message", async () => {
    const argumentsJson = `"${"a".repeat(byteBounds({ maxMessageBytes: MAX_MESSAGE_BYTES }).maxInFlightBytes - 16)}"`;
    backend.enqueue(async (_request, sink, signal) => {
      await sink.requestApproval({ toolCallId: "call-1", toolName: "write_file", argumentsJson }, signal);
      return { kind: "completed", stopReason: StopReason.END_TURN };
    });
    const abort = new AbortController();
    const watch = clients.observation.watchWorker({ worker }, { signal: abort.signal });
    const iterator = watch[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.snapshot).toBeDefined();
    await clients.interaction.sendInput({ worker, input: { text: "x".repeat(INPUT_ROOM - 1024) } });
    const { error, detail } = await expectError(async () => {
      for (;;) if ((await iterator.next()).done) return;
    });
    expect([error.code, detail?.reason, detail?.metadata.limit]).toEqual([
      Code.ResourceExhausted,
      ErrorReason.LIMIT_EXCEEDED,
      String(MAX_MESSAGE_BYTES),
    ]);
    // The runtime's refusal, naming the event's size; not the transport's, which writes nothing of it.
    expect(error.rawMessage).toMatch(/^a message of \d+ bytes would exceed the message limit of 262144 bytes$/);
    abort.abort();
  });
});
