import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createBackend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { startRuntimeServer } from "../../src/server/index.js";
import { clientsFor, makeTransport } from "../support/harness.js";
import { replyWith, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * Watches send binary clients their events pre-encoded, as unknown fields
 * of the response (wire-batch.ts), which a JSON response cannot carry; so a
 * JSON client must be told apart exactly as connect-node tells it apart:
 * media types are case-insensitive (RFC 9110), and connect-node serves
 * "application/connect+JSON" as JSON. Before, a watch decided by a
 * case-sensitive match (a runtime's and a Backend's alike), sent such a
 * client pre-encoded batches, and the JSON serializer dropped their events:
 * the client saw empty batches.
 */

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A runtime served on its own, or an embedded one behind a Backend; its base URL. */
async function serve(via: "runtime" | "backend"): Promise<string> {
  const runtime = await createRuntime({ logger: silentLogger, executionBackend: new ScriptedBackend(replyWith("hello there", 3)) });
  const backend = via === "backend" ? createBackend({ runtime, logger: silentLogger }) : undefined;
  const server = await startRuntimeServer({
    runtime,
    ...(backend ? { routes: backend.routes } : {}),
    host: "127.0.0.1",
    port: 0,
    logger: silentLogger,
  });
  cleanups.push(() => server.close(0));
  if (backend) cleanups.push(() => backend.close());
  return `http://${server.h2Address}`;
}

describe.each(["runtime", "backend"] as const)("a JSON watch whose content type is not in lower case (%s)", (via) => {
  it.each(["application/connect+json", "application/connect+JSON", "Application/Connect+Json; charset=utf-8"])(
    "%s: gets every event",
    async (contentType) => {
      const baseUrl = await serve(via);
      const session = new Http2SessionManager(baseUrl);
      cleanups.push(() => session.abort());
      const clients = clientsFor(makeTransport("connect", baseUrl, session));
      const runtimeId = (await clients.management.getRuntime({})).runtime?.runtimeId ?? "";
      const { worker } = await clients.catalog.createWorker({ runtimeId });
      // A JSON client that spells its media type its own way.
      const spelled: Interceptor = (next) => async (request) => {
        request.header.set("content-type", contentType);
        return next(request);
      };
      const transport = createConnectTransport({
        baseUrl,
        httpVersion: "2",
        sessionManager: session,
        useBinaryFormat: false,
        interceptors: [spelled],
      });
      const observation = createClient(WorkerObservation, transport);
      const events: WorkerEvent[] = [];
      const watch = (async () => {
        for await (const message of observation.watchWorker({ worker: worker?.ref })) {
          // Every message is a snapshot, a heartbeat or a batch of events: an empty batch is events lost.
          if (!message.snapshot && !message.heartbeat && message.events.length === 0) throw new Error("a batch without its events");
          events.push(...message.events);
          const ended = message.events.some((e) => e.kind.case === "runChanged" && e.kind.value.status >= RunStatus.COMPLETED);
          if (ended) return;
        }
      })();
      await clients.interaction.sendInput({ worker: worker?.ref, input: { text: "hi" } });
      await watch;
      const text = events.flatMap((e) => (e.kind.case === "textDelta" ? [e.kind.value.text] : [])).join("");
      expect(text).toBe("hello there");
    },
  );
});
