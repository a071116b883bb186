import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeEventSchema, WorkerEventSchema, type RuntimeEvent, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { startCli, type CliProcess } from "../support/cli-process.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { cursorAt } from "../support/cursors.js";
import { eventually } from "../support/harness.js";
import { parseLogLines } from "../support/log-lines.js";
import { reply, replyChunks } from "../support/openai-chunks.js";
import { createLeakRecorder } from "./leak-recorder.js";
import { connectTo, started, startRuntimeProcess, startTokenedRuntimes, type ClientSet, type RuntimeProcess } from "./processes.js";

/**
 * The Backend end to end, as a team runs it: three `worker-runtime serve`
 * processes with file stores behind one `worker-runtime backend` process,
 * every call through the generated gRPC clients. Two runtimes come from the
 * config file (one with user info in its URL, one with its token in an
 * environment variable), the third is added through RuntimeRegistry at run
 * time. Every response and error the Backend returns is recorded and, at
 * the end, scanned for the runtimes' tokens, the URL user info and the
 * data-dir paths.
 */

const TOKENS: Record<string, string> = {
  "rt-a": "tok-a-3b9f0c1d2e",
  "rt-b": "tok-b-8a7e6d5c4b",
  "rt-c": "tok-c-1f2e3d4c5b",
  "rt-d": "tok-d-9e8d7c6b5a",
};
const BACKEND_TOKEN = "tok-backend-client-77aa";
const USERINFO_SECRET = "userinfo-pw-5511";
const FANOUT_TIMEOUT_MS = 3_000;

const recorder = createLeakRecorder();
let dir: string;
let fake: FakeOpenAI;
const runtimes = new Map<string, RuntimeProcess>();
let backend: CliProcess;
let client: ClientSet;
const direct = new Map<string, ClientSet>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wr-backend-"));
  fake = await startFakeOpenAI();
  // Every run streams some text, then hangs until its runtime is killed (or a test enqueues a complete reply).
  fake.setFallback({ kind: "stream", chunks: replyChunks({ text: "a partial answer that never ends" }), end: "hang" });
  await writeFile(join(dir, "backend.token"), BACKEND_TOKEN);
  const processes = await startTokenedRuntimes(dir, ["rt-a", "rt-b", "rt-c"], TOKENS, fake.baseURL);
  for (const p of processes) {
    runtimes.set(p.runtimeId, p);
    direct.set(p.runtimeId, connectTo(p.address, TOKENS[p.runtimeId]));
  }
  const config = {
    runtimes: [
      { id: "rt-a", url: `http://alice:${USERINFO_SECRET}@${runtimes.get("rt-a")?.address}`, tokenFile: "rt-a.token" },
      { id: "rt-b", url: `http://${runtimes.get("rt-b")?.address}`, tokenEnv: "RT_B_TOKEN" },
    ],
  };
  await writeFile(join(dir, "backend.json"), JSON.stringify(config));
  backend = startCli(
    [
      "backend",
      "--port",
      "0",
      "--http1-port",
      "0",
      "--runtime-id",
      "rt-emb",
      "--config",
      join(dir, "backend.json"),
      "--token-file",
      join(dir, "backend.token"),
      "--fanout-timeout-ms",
      String(FANOUT_TIMEOUT_MS),
    ],
    { RT_B_TOKEN: TOKENS["rt-b"] ?? "" },
  );
  started.push(backend);
  client = connectTo((await backend.listening).h2c, BACKEND_TOKEN, [recorder.interceptor]);
  await client.registry.addRuntime({
    runtimeId: "rt-c",
    url: `http://${runtimes.get("rt-c")?.address}`,
    bearerToken: TOKENS["rt-c"] ?? "",
  });
  await eventually(
    async () => (await client.registry.listRuntimes({})).runtimes.every((r) => r.health === RuntimeHealth.READY),
    20_000,
    "every runtime READY",
  );
}, 60_000);

afterAll(async () => {
  client?.close();
  for (const c of direct.values()) c.close();
  for (const cli of started.splice(0)) cli.kill();
  await fake?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function healthOf(runtimeId: string): Promise<RuntimeHealth | undefined> {
  return (await client.registry.getRegisteredRuntime({ runtimeId })).runtime?.health;
}

/** Every worker id through the Backend, page by page, checking each page is complete. */
async function listAll(pageSize: number): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let pageToken = "";
  let pages = 0;
  do {
    const page = await client.catalog.listWorkers({ pageSize, pageToken });
    expect(page.failedRuntimes).toEqual([]);
    expect(page.workers.length).toBeLessThanOrEqual(pageSize);
    ids.push(...page.workers.map((w) => `${w.ref?.runtimeId}/${w.ref?.workerId}`));
    pageToken = page.nextPageToken;
    pages++;
  } while (pageToken !== "");
  return { ids, pages };
}

/** Reads a watch in the background, keeping every message's events and the error it ended with. */
/** The cursor of a watch's opening snapshot. */
async function snapshotCursor(stream: AsyncIterable<{ snapshot?: { cursor: string } }>): Promise<string> {
  for await (const message of stream) return message.snapshot?.cursor ?? "";
  throw new Error("the watch ended before its snapshot");
}

function collect(stream: AsyncIterable<{ events: WorkerEvent[] }>): { events: WorkerEvent[]; ended: Promise<unknown> } {
  const events: WorkerEvent[] = [];
  const ended = (async () => {
    try {
      for await (const message of stream) events.push(...message.events);
      return undefined;
    } catch (error) {
      return error;
    }
  })();
  return { events, ended };
}

/** Reads a stream until `done` says so, or fails after `timeoutMs`; always cancels the stream. */
async function readUntil<M>(
  open: (signal: AbortSignal) => AsyncIterable<M> | undefined,
  done: (message: M) => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    for await (const message of open(controller.signal) ?? []) {
      if (done(message)) return;
    }
    throw new Error(`${what} ended early`);
  } catch (error) {
    if (controller.signal.aborted) throw new Error(`${what}: timed out`);
    throw error;
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}

const durable = (events: readonly WorkerEvent[]): WorkerEvent[] => events.filter((e) => e.seq > 0n);

function runReached(events: readonly WorkerEvent[], runId: string, status: RunStatus): boolean {
  return events.some((e) => e.kind.case === "runChanged" && e.kind.value.runId === runId && e.kind.value.status === status);
}

describe("worker-runtime backend over three runtime processes", () => {
  it("creates workers on each runtime through the Backend and merges them in ListWorkers with correct pagination", async () => {
    for (const runtimeId of ["rt-c", "rt-a", "rt-b"]) {
      for (let i = 0; i < 3; i++) await client.catalog.createWorker({ runtimeId, displayName: `${runtimeId}-${i}` });
    }
    await client.catalog.createWorker({ runtimeId: "rt-emb", displayName: "embedded-0" });
    // Expected: by runtime_id, then each runtime's own order, as each lists itself.
    const expected: string[] = [];
    for (const runtimeId of ["rt-a", "rt-b", "rt-c"]) {
      const own = await direct.get(runtimeId)?.catalog.listWorkers({ runtimeId, pageSize: 100 });
      expect(own?.workers).toHaveLength(3);
      expected.push(...(own?.workers ?? []).map((w) => `${runtimeId}/${w.ref?.workerId}`));
    }
    const embedded = await client.catalog.listWorkers({ runtimeId: "rt-emb" });
    expected.push(...embedded.workers.map((w) => `rt-emb/${w.ref?.workerId}`));
    expect(expected).toHaveLength(10);
    for (const pageSize of [1, 2, 3, 4, 10, 50]) {
      const { ids, pages } = await listAll(pageSize);
      expect(ids, `page size ${pageSize}`).toEqual(expected);
      expect(pages).toBe(Math.max(1, Math.ceil(10 / pageSize)));
    }
    // The registry's summaries are fetched afresh: each runtime now counts its workers.
    const listed = (await client.registry.listRuntimes({})).runtimes;
    // Runtime addresses stay inside the Backend: browsers read this list.
    expect(listed.map((r) => r.endpoint)).toEqual(["", "", "", ""]);
    const summaries = listed.map((r) => [r.runtimeId, r.summary?.workerCounts?.idle]);
    expect(summaries).toEqual([
      ["rt-a", 3],
      ["rt-b", 3],
      ["rt-c", 3],
      ["rt-emb", 1],
    ]);
    // Routed by runtime_id, the runtime's own pagination is untouched.
    const one = await client.catalog.listWorkers({ runtimeId: "rt-b", pageSize: 2 });
    expect(one.workers.map((w) => w.displayName)).toEqual(["rt-b-0", "rt-b-1"]);
    expect(one.nextPageToken).not.toBe("");
  });

  it("serves Connect JSON over HTTP/1.1 like a runtime does", async () => {
    const http1 = (await backend.listening).http1;
    const transport = createConnectTransport({
      baseUrl: `http://${http1}`,
      httpVersion: "1.1",
      useBinaryFormat: false,
      interceptors: [
        recorder.interceptor,
        (next) => (request) => {
          request.header.set("authorization", `Bearer ${BACKEND_TOKEN}`);
          return next(request);
        },
      ],
    });
    const listed = await createClient(WorkerCatalog, transport).listWorkers({ pageSize: 100 });
    expect(listed.workers).toHaveLength(10);
    const registry = await createClient(RuntimeRegistry, transport).listRuntimes({});
    expect(registry.runtimes.map((r) => [r.runtimeId, r.embedded, r.hasCredentials])).toEqual([
      ["rt-a", false, true],
      ["rt-b", false, true],
      ["rt-c", false, true],
      ["rt-emb", true, false],
    ]);
    // A watch relayed to a JSON client: decoded messages, the snapshot first.
    const jsonWatch = createClient(WorkerObservation, transport).watchRuntime({ runtimeId: "rt-b" })[Symbol.asyncIterator]();
    expect((await jsonWatch.next()).value?.snapshot?.runtime?.runtimeId).toBe("rt-b");
    await jsonWatch.return?.();
    // Runtime addresses stay inside the Backend (browsers read the registry).
    expect(registry.runtimes.map((r) => r.endpoint)).toEqual(["", "", "", ""]);
  });

  it("gives a runtime that stops answering its own deadline, not everyone's", async () => {
    const b = runtimes.get("rt-b") as RuntimeProcess;
    b.cli.child.kill("SIGSTOP");
    try {
      const startedAt = Date.now();
      const page = await client.catalog.listWorkers({ pageSize: 100 });
      const elapsed = Date.now() - startedAt;
      expect(page.failedRuntimes.map((f) => [f.runtimeId, f.reason])).toEqual([["rt-b", ErrorReason.RUNTIME_UNAVAILABLE]]);
      expect(page.workers.map((w) => w.ref?.runtimeId)).toEqual(["rt-a", "rt-a", "rt-a", "rt-c", "rt-c", "rt-c", "rt-emb"]);
      expect(elapsed).toBeGreaterThanOrEqual(FANOUT_TIMEOUT_MS - 100);
      expect(elapsed).toBeLessThan(FANOUT_TIMEOUT_MS + 2_000);
      // Calls to the others are not held up meanwhile.
      expect((await client.catalog.listWorkers({ runtimeId: "rt-c" })).workers).toHaveLength(3);
    } finally {
      b.cli.child.kill("SIGCONT");
    }
    await eventually(async () => (await healthOf("rt-b")) === RuntimeHealth.READY, 20_000, "rt-b READY after SIGCONT");
    expect((await client.catalog.listWorkers({ pageSize: 100 })).failedRuntimes).toEqual([]);
  }, 40_000);

  it("survives SIGKILL and restart of a runtime: partial lists, health, and a relayed watch with exactly the durable events", async () => {
    const a = runtimes.get("rt-a") as RuntimeProcess;
    const created = await client.catalog.createWorker({ runtimeId: "rt-a", displayName: "watched" });
    const worker = created.worker?.ref as WorkerRef;
    // Cursors name their stream: the start of each is the snapshot's cursor moved to seq 0.
    const workerStart = cursorAt(await snapshotCursor(client.observation.watchWorker({ worker })), 0n);
    const runtimeStart = cursorAt(await snapshotCursor(client.observation.watchRuntime({ runtimeId: "rt-a" })), 0n);
    const relayed = collect(client.observation.watchWorker({ worker, afterCursor: workerStart }));
    const runtimeEvents: RuntimeEvent[] = [];
    const relayedRuntime = (async () => {
      try {
        for await (const message of client.observation.watchRuntime({ runtimeId: "rt-a", afterCursor: runtimeStart }))
          runtimeEvents.push(...message.events);
      } catch (error) {
        return error;
      }
      return undefined;
    })();
    const requestsBefore = fake.requests.length;
    const first = await client.interaction.sendInput({ worker, input: { text: "hello" } });
    const firstRunId = first.run?.runId ?? "";
    // Mid-run: the model is streaming (text deltas seen through the Backend) and never finishes.
    await fake.waitForRequests(requestsBefore + 1);
    await eventually(() => relayed.events.some((e) => e.kind.case === "textDelta"), 10_000, "text deltas through the backend");

    await a.kill();
    const startedAt = Date.now();
    const partial = await client.catalog.listWorkers({ pageSize: 100 });
    const elapsed = Date.now() - startedAt;
    expect(elapsed).toBeLessThan(FANOUT_TIMEOUT_MS + 2_000);
    expect(partial.failedRuntimes.map((f) => f.runtimeId)).toEqual(["rt-a"]);
    expect(partial.failedRuntimes[0]?.reason).toBe(ErrorReason.RUNTIME_UNAVAILABLE);
    const listedRuntimes = new Set(partial.workers.map((w) => w.ref?.runtimeId));
    expect([...listedRuntimes].sort()).toEqual(["rt-b", "rt-c", "rt-emb"]);
    await eventually(async () => (await healthOf("rt-a")) === RuntimeHealth.UNAVAILABLE, 10_000, "rt-a UNAVAILABLE");
    // A call routed to it fails at once with a typed, safe error.
    const routed = await client.catalog.getWorker({ worker }).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );
    expect(routed?.code).toBe(Code.Unavailable);
    expect(routed?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.RUNTIME_UNAVAILABLE);

    await a.restart();
    // Back to READY by itself (connection backoff), no manual step.
    await eventually(async () => (await healthOf("rt-a")) === RuntimeHealth.READY, 20_000, "rt-a READY again");
    const { ids } = await listAll(100);
    expect(ids.filter((id) => id.startsWith("rt-a/"))).toHaveLength(4);
    // The interrupted run reaches the watcher through the resumed relay; then a second run completes.
    await eventually(() => runReached(relayed.events, firstRunId, RunStatus.INTERRUPTED), 20_000, "INTERRUPTED through the relay");
    fake.enqueue(reply({ text: "a complete answer" }));
    const second = await client.interaction.sendInput({ worker, input: { text: "again" } });
    const secondRunId = second.run?.runId ?? "";
    await eventually(() => runReached(relayed.events, secondRunId, RunStatus.COMPLETED), 20_000, "second run COMPLETED through the relay");
    await eventually(async () => (await client.catalog.getWorker({ worker })).worker?.activeRunId === "", 10_000, "worker idle");

    // An uninterrupted direct watch from cursor zero, started after the restart.
    const relayedDurable = durable(relayed.events);
    const lastSeq = relayedDurable.at(-1)?.seq ?? 0n;
    const directEvents: WorkerEvent[] = [];
    await readUntil(
      (signal) => direct.get("rt-a")?.observation.watchWorker({ worker, afterCursor: workerStart }, { signal }),
      (message) => {
        directEvents.push(...durable(message.events));
        return (directEvents.at(-1)?.seq ?? 0n) >= lastSeq;
      },
      "direct worker watch",
    );
    const asJson = (events: WorkerEvent[]): unknown[] => events.map((e) => toJson(WorkerEventSchema, e));
    // The direct read may end on a batch past lastSeq (a worker update written as the run ended):
    // the relay gets there too, and then both hold the same events.
    const directLast = directEvents.at(-1)?.seq ?? 0n;
    await eventually(() => (durable(relayed.events).at(-1)?.seq ?? 0n) >= directLast, 10_000, "relay caught up with the direct watch");
    const relayedUpTo = durable(relayed.events).filter((e) => e.seq <= directLast);
    expect(relayedUpTo.map((e) => e.seq)).toEqual(relayedUpTo.map((_, i) => BigInt(i + 1)));
    expect(asJson(relayedUpTo)).toEqual(asJson(directEvents));
    // No duplicate anywhere in the relayed stream, also past the compared part.
    const relayedSeqs = durable(relayed.events).map((e) => e.seq);
    expect(relayedSeqs).toEqual(relayedSeqs.map((_, i) => BigInt(i + 1)));

    // The runtime-wide watch was relayed across the restart the same way.
    let lastRuntimeCursor = "";
    await readUntil(
      (signal) => direct.get("rt-a")?.observation.watchRuntime({ runtimeId: "rt-a" }, { signal }),
      (message) => {
        lastRuntimeCursor = message.snapshot?.cursor ?? "";
        return true;
      },
      "direct runtime snapshot",
    );
    expect(lastRuntimeCursor).not.toBe("");
    // Compared up to the snapshot's cursor: a runtime event written after the snapshot (the
    // worker's idle update can trail GetWorker's answer) may come in the same batch as it.
    const upToSnapshot = (events: RuntimeEvent[]): RuntimeEvent[] =>
      events.slice(0, events.findIndex((event) => event.cursor === lastRuntimeCursor) + 1);
    await eventually(() => upToSnapshot(runtimeEvents).length > 0, 10_000, "runtime watch caught up");
    const directRuntime: RuntimeEvent[] = [];
    await readUntil(
      (signal) => direct.get("rt-a")?.observation.watchRuntime({ runtimeId: "rt-a", afterCursor: runtimeStart }, { signal }),
      (message) => {
        directRuntime.push(...message.events);
        return upToSnapshot(directRuntime).length > 0;
      },
      "direct runtime watch",
    );
    const runtimeJson = (events: RuntimeEvent[]): unknown[] => events.map((e) => toJson(RuntimeEventSchema, e));
    expect(runtimeJson(upToSnapshot(runtimeEvents))).toEqual(runtimeJson(upToSnapshot(directRuntime)));
    expect(await Promise.race([relayedRuntime, Promise.resolve("still open")])).toBe("still open");
  }, 90_000);

  it("shows a wrong token as UNAUTHENTICATED in the registry and backs off its reconnects", async () => {
    await writeFile(join(dir, "rt-d.token"), TOKENS["rt-d"] ?? "");
    const d = await startRuntimeProcess({
      runtimeId: "rt-d",
      dataDir: join(dir, "rt-d"),
      tokenFile: join(dir, "rt-d.token"),
      openaiBaseUrl: fake.baseURL,
    });
    await client.registry.addRuntime({ runtimeId: "rt-d", url: `http://${d.address}`, bearerToken: "not-the-right-token" });
    await eventually(async () => (await healthOf("rt-d")) === RuntimeHealth.UNAUTHENTICATED, 10_000, "rt-d UNAUTHENTICATED");
    const seenAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    const entry = (await client.registry.getRegisteredRuntime({ runtimeId: "rt-d" })).runtime;
    const waited = (Date.now() - seenAt) / 1000;
    // gRPC backoff (1 s, 1.6 s, 2.56 s, ... ±20 %): a handful of attempts, not a loop.
    expect(entry?.failedAttempts).toBeGreaterThanOrEqual(2);
    expect(entry?.failedAttempts).toBeLessThanOrEqual(2 + Math.ceil(waited));
    expect(entry?.health).toBe(RuntimeHealth.UNAUTHENTICATED);
    expect(entry?.hasCredentials).toBe(true);
    const logged = backend
      .stderr()
      .split("\n")
      .filter((line) => line.includes('"runtime connection failed"') && line.includes('"rt-d"'));
    expect(logged.length).toBeGreaterThanOrEqual((entry?.failedAttempts ?? 0) - 1);
    expect(logged.length).toBeLessThanOrEqual((entry?.failedAttempts ?? 0) + 1);
    expect(backend.child.exitCode).toBeNull();
    const listing = await client.catalog.listWorkers({});
    expect(listing.failedRuntimes.find((f) => f.runtimeId === "rt-d")?.reason).toBe(ErrorReason.RUNTIME_UNAUTHENTICATED);
    const refused = await client.catalog.createWorker({ runtimeId: "rt-d" }).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );
    expect(refused?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.RUNTIME_UNAUTHENTICATED);
    await client.registry.removeRuntime({ runtimeId: "rt-d" });
    await d.kill();
  }, 40_000);

  it("adds and removes runtimes at run time: the removed one's workers disappear and its watches end typed", async () => {
    const workers = await client.catalog.listWorkers({ runtimeId: "rt-c" });
    const worker = workers.workers[0]?.ref as WorkerRef;
    const watch = client.observation.watchWorker({ worker })[Symbol.asyncIterator]();
    expect((await watch.next()).value?.snapshot).toBeDefined();
    await client.registry.removeRuntime({ runtimeId: "rt-c" });
    const ended = await (async () => {
      try {
        while (!(await watch.next()).done);
        return undefined;
      } catch (error) {
        return ConnectError.from(error);
      }
    })();
    expect(ended?.code).toBe(Code.NotFound);
    expect(ended?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.NOT_FOUND);
    expect(ended?.findDetails(ErrorDetailSchema)[0]?.metadata["runtime_id"]).toBe("rt-c");
    const { ids } = await listAll(3);
    expect(ids.some((id) => id.startsWith("rt-c/"))).toBe(false);
    expect(ids.filter((id) => id.startsWith("rt-b/"))).toHaveLength(3);
    const gone = await client.registry.getRegisteredRuntime({ runtimeId: "rt-c" }).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );
    expect(gone?.code).toBe(Code.NotFound);
    const embedded = await client.registry.removeRuntime({ runtimeId: "rt-emb" }).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );
    expect(embedded?.code).toBe(Code.FailedPrecondition);
    // Added again, it is listed again.
    await client.registry.addRuntime({
      runtimeId: "rt-c",
      url: `http://${runtimes.get("rt-c")?.address}`,
      bearerToken: TOKENS["rt-c"] ?? "",
    });
    await eventually(async () => (await healthOf("rt-c")) === RuntimeHealth.READY, 10_000, "rt-c READY");
    expect((await listAll(5)).ids.filter((id) => id.startsWith("rt-c/"))).toHaveLength(3);
  }, 40_000);

  it("never returns a runtime token, URL user info or data-dir path in any response or error", () => {
    expect(recorder.texts.length).toBeGreaterThan(50);
    const registry = recorder.texts.filter((t) => t.includes("rt-a") && t.includes("healthChangedAt"));
    expect(registry.length).toBeGreaterThan(0);
    const addresses = [...runtimes.values()].map((r) => r.address);
    for (const secret of [
      ...Object.values(TOKENS),
      "not-the-right-token",
      BACKEND_TOKEN,
      USERINFO_SECRET,
      "alice",
      dir,
      tmpdir(),
      ...addresses,
    ]) {
      expect(recorder.find(secret), secret).toEqual([]);
    }
  });

  it("logs only JSON lines, and no runtime token, client token or URL user info", () => {
    const logs = started.map((cli) => cli.stderr());
    const lines = logs.flatMap(parseLogLines);
    expect(lines.length).toBeGreaterThan(10);
    const all = logs.join("\n");
    for (const secret of [...Object.values(TOKENS), "not-the-right-token", BACKEND_TOKEN, USERINFO_SECRET]) {
      expect(all.includes(secret), secret).toBe(false);
    }
  });
});
