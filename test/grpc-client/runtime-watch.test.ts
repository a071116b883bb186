import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createFastGrpcTransport } from "../../src/grpc-client/index.js";
import { startHarness, type Harness } from "../support/harness.js";
import { replyWith, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * The runtime's own server (its fast stream writer, batched and shared
 * frames) read by connect's transport and by the fast one at the same time:
 * both watchers see the same events, a 96 KiB delta (compressed on the
 * wire) included, and unary calls over the fast transport work as before.
 */
describe("WatchWorker from a real runtime over the fast transport", () => {
  let harness: Harness;
  const text = "0123456789abcdef".repeat(6 * 1024);

  beforeAll(async () => {
    harness = await startHarness({ executionBackend: new ScriptedBackend(replyWith(text, 400)) });
  });
  afterAll(async () => {
    await harness.close();
  });

  it("delivers the same events to a connect watcher and a fast watcher", async () => {
    const sessions = [new Http2SessionManager(harness.baseUrl), new Http2SessionManager(harness.baseUrl)];
    const connect = createGrpcTransport({ baseUrl: harness.baseUrl, sessionManager: sessions[0] });
    const fast = createFastGrpcTransport({ baseUrl: harness.baseUrl, sessionManager: sessions[1] });
    try {
      // Unary calls take connect's path inside the fast transport.
      const worker = (await createClient(WorkerCatalog, fast).createWorker({ runtimeId: harness.runtime.runtimeId })).worker?.ref;
      const subscribed: Promise<void>[] = [];
      const watch = async (transport: typeof fast): Promise<WorkerEvent[]> => {
        const events: WorkerEvent[] = [];
        let onSnapshot = (): void => undefined;
        subscribed.push(new Promise((resolve) => (onSnapshot = resolve)));
        for await (const message of createClient(WorkerObservation, transport).watchWorker({ worker })) {
          // The snapshot comes first: from then on this watcher sees every event.
          if (message.snapshot) onSnapshot();
          events.push(...message.events);
          if (message.events.some((e) => e.kind.case === "runChanged" && e.kind.value.status === RunStatus.COMPLETED)) return events;
        }
        return events;
      };
      const watchers = [watch(connect), watch(fast)];
      await Promise.all(subscribed);
      await createClient(WorkerInteraction, connect).sendInput({ worker, input: { text: "go" } });
      const [byConnect, byFast] = await Promise.all(watchers);
      const streamed = (byFast ?? []).flatMap((event) => (event.kind.case === "textDelta" ? [event.kind.value.text] : [])).join("");
      expect(streamed).toBe(text);
      expect(byFast).toEqual(byConnect);
    } finally {
      for (const session of sessions) session.abort();
    }
  });
});
