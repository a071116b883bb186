import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { type Clients, eventually } from "../support/harness.js";

/**
 * A remote Runtime that comes back is used again as soon as someone asks
 * for it, not when the Backend's reconnect backoff (up to minutes after a
 * long outage) next wakes: a call routed to it while it is away still fails
 * at once, and wakes the connection for an attempt now. Here the backoff's
 * first delay is a minute, so only the calls can bring the Runtime back
 * within the test.
 */

let served: BackendWithRemote | undefined;

afterEach(async () => {
  await served?.close();
  served = undefined;
});

async function serveWithSlowBackoff(): Promise<BackendWithRemote> {
  served = await startBackendWithRemote({
    remote: await createRuntime({ logger: silentLogger, runtimeId: "rs" }),
    embedded: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    backend: { backoff: { initialMs: 60_000, maxMs: 60_000, jitter: 0 } },
  });
  return served;
}

/** A Backend whose remote "rs" has gone away (UNAVAILABLE), with clients of it and the connection attempts made since. */
async function awayRuntime(): Promise<{ via: Clients; attemptsSince: () => number }> {
  const { backend, clients, remoteServer } = await serveWithSlowBackoff();
  const connection = backend.directory.get("rs");
  await remoteServer.close(0);
  await eventually(() => connection?.health === RuntimeHealth.UNAVAILABLE, 10_000, "UNAVAILABLE");
  const attemptsBefore = connection?.snapshot.failedAttempts ?? 0;
  return { via: clients("grpc"), attemptsSince: () => (connection?.snapshot.failedAttempts ?? 0) - attemptsBefore };
}

function refusal(error: unknown): { code: Code; reason: ErrorReason | undefined } {
  const typed = ConnectError.from(error);
  return { code: typed.code, reason: typed.findDetails(ErrorDetailSchema)[0]?.reason };
}

describe("a remote runtime that comes back", () => {
  const askers = {
    "a call routed to it": (via: Clients) => via.catalog.listWorkers({ runtimeId: "rs" }),
    // A worker the restarted (empty) runtime does not have: once it is READY, its own NOT_FOUND answers.
    "a watch relayed from it": async (via: Clients) => {
      for await (const _ of via.observation.watchWorker({ worker: { runtimeId: "rs", workerId: "w-none" } })) return;
    },
  };
  for (const [asker, ask] of Object.entries(askers)) {
    it(`is tried again on ${asker}, not only when the backoff ends`, async () => {
      const { backend, clients, restartRemote } = await serveWithSlowBackoff();
      const connection = backend.directory.get("rs");
      await restartRemote(async () => {
        await eventually(() => connection?.health === RuntimeHealth.UNAVAILABLE, 10_000, "UNAVAILABLE after the runtime left");
        return createRuntime({ logger: silentLogger, runtimeId: "rs" });
      });
      const via = clients("grpc");

      // Still away as far as the Backend knows: refused at once, typed, and the connection is woken.
      const first = await ask(via).then(() => undefined, refusal);
      expect(first).toEqual({ code: Code.Unavailable, reason: ErrorReason.RUNTIME_UNAVAILABLE });
      await eventually(() => connection?.health === RuntimeHealth.READY, 10_000, "READY again, long before the backoff's minute");
      // Answered by the runtime itself now (a watch of a worker it does not have: its NOT_FOUND).
      const second = await ask(via).then(() => undefined, refusal);
      expect(second === undefined || second.reason === ErrorReason.NOT_FOUND).toBe(true);
    }, 30_000);
  }

  it("is not dialled by listings across runtimes, which the console repeats every few seconds", async () => {
    const { via, attemptsSince } = await awayRuntime();
    for (let i = 0; i < 5; i++) {
      const { failedRuntimes } = await via.catalog.listWorkers({});
      expect(failedRuntimes.map((f) => f.runtimeId)).toEqual(["rs"]);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(attemptsSince()).toBe(0);
  }, 30_000);

  it("is not tried more than once a second however many calls are routed to it", async () => {
    const { via, attemptsSince } = await awayRuntime();

    const startedAt = Date.now();
    let calls = 0;
    while (Date.now() - startedAt < 2_500) {
      const refused = await via.catalog.listWorkers({ runtimeId: "rs" }).then(() => undefined, refusal);
      expect(refused?.reason).toBe(ErrorReason.RUNTIME_UNAVAILABLE);
      calls++;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const attempts = attemptsSince();
    // About one attempt per second of calls (2.5 s: two or three), never one per call.
    expect(calls).toBeGreaterThan(20);
    expect(attempts).toBeGreaterThanOrEqual(1);
    expect(attempts).toBeLessThanOrEqual(4);
  }, 30_000);
});
