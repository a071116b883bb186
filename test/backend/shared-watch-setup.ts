import { afterEach } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import type { Backend } from "../../src/backend/index.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { createRuntime, type Runtime, silentLogger } from "../../src/runtime/index.js";
import { type BackendWithRemote, type BackendWithRemoteInit, startBackendWithRemote } from "../support/backend-with-remote.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { type Clients, eventually } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";
import { WorkerWatchReader } from "./worker-watch-reader.js";

/** What the shared-WatchWorker tests run against. */
export interface SharedWatchSetup {
  fake: FakeOpenAI;
  /** The remote runtime: a real server whose per-worker watcher limit is 2. */
  remote: Runtime;
  served: BackendWithRemote;
  backend: Backend;
  /** Clients through the Backend (gRPC, Connect JSON, the console's transport) and of the remote runtime directly. */
  via: Record<"grpc" | "connect" | "console" | "direct", Clients>;
}

/**
 * A fake provider answering "ok", a remote runtime "rs" (per-worker watcher
 * limit 2, heartbeats every 200 ms) and an embedded one "emb", served by a
 * Backend with quick heartbeats and backoff; `init` adds the Backend's
 * watch settings and, say, a proxy in front of the remote.
 */
export async function startSharedWatchSetup(init: Pick<BackendWithRemoteInit, "remoteUrl" | "backend">): Promise<SharedWatchSetup> {
  const fake = await startFakeOpenAI();
  fake.setFallback(reply({ text: "ok" }));
  const runtimeOf = (runtimeId: string) =>
    createRuntime({
      logger: silentLogger,
      runtimeId,
      executionBackend: createOpenAIBackend({ apiKey: "sk-shared-watch-test", baseURL: fake.baseURL }),
      limits: { maxWatchersPerWorker: 2, heartbeatIntervalMs: 200 },
    });
  const remote = await runtimeOf("rs");
  const served = await startBackendWithRemote({
    remote,
    embedded: await runtimeOf("emb"),
    ...(init.remoteUrl ? { remoteUrl: init.remoteUrl } : {}),
    backend: { heartbeatMs: 200, backoff: { initialMs: 50, maxMs: 200 }, ...init.backend },
  });
  const via = {
    grpc: served.clients("grpc"),
    connect: served.clients("connect"),
    console: served.consoleClients(),
    direct: served.remoteClients("grpc"),
  };
  return { fake, remote, served, backend: served.backend, via };
}

/** Watch streams of workers the runtime serves now (its WatchRuntime streams aside). */
export function workerWatchers(runtime: Runtime): number {
  const stats = runtime.stats();
  return stats.subscriptions - stats.runtimeSubscriptions;
}

/**
 * Opens WatchWorker readers for a test (`watch(from, worker, afterCursor?)`), registered as
 * this file's afterEach: every reader of the test is closed, then it waits
 * until the runtime serves no worker watch (the shared upstream closed after
 * its linger), so no test starts with another's watches.
 */
export function useWatchReaders(remote: () => Runtime): (from: Clients, worker: WorkerRef, afterCursor?: string) => WorkerWatchReader {
  const readers: WorkerWatchReader[] = [];
  afterEach(async () => {
    for (const reader of readers.splice(0)) reader.close();
    await eventually(() => workerWatchers(remote()) === 0, 10_000, "the runtime's worker watchers gone");
  });
  return (from, worker, afterCursor = "") => {
    const reader = new WorkerWatchReader(from, worker, afterCursor);
    readers.push(reader);
    return reader;
  };
}
