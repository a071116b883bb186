import { Code, createRouterTransport } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { createBackend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { expectReason } from "../support/errors.js";
import { clientsFor, eventually, startHarness } from "../support/harness.js";
import { holdOpen, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A remote runtime that drains (a rolling update: SIGTERM, up to
 * --shutdown-grace-ms for its runs) still serves the runs it is finishing:
 * reads, watches and cancels. The Backend shows it UNAVAILABLE (no new
 * placement) but must keep routing to it, and leave refusing new work to the
 * runtime itself (RUNTIME_DRAINING). It refused every call with
 * RUNTIME_UNAVAILABLE, so a user could neither follow nor cancel a run that
 * went on for the whole grace period.
 */

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("a Backend in front of a draining runtime", () => {
  it("lists, and routes reads, watches and cancels of the runs it is finishing; the runtime refuses new input with RUNTIME_DRAINING", async () => {
    const scripted = new ScriptedBackend();
    const remote = await startHarness({ runtimeId: "rs", executionBackend: scripted });
    cleanups.push(() => remote.close());
    const backend = createBackend({
      runtime: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
      logger: silentLogger,
      remotes: [{ runtimeId: "rs", url: remote.baseUrl }],
    });
    cleanups.push(async () => backend.close());
    const viaBackend = clientsFor(createRouterTransport(backend.routes));
    await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "READY");

    const { worker } = await viaBackend.catalog.createWorker({ runtimeId: "rs" });
    const held = holdOpen("still thinking");
    scripted.enqueue(held.script);
    const { run } = await viaBackend.interaction.sendInput({ worker: worker?.ref, input: { text: "hi" } });
    await held.started;
    const runId = run?.runId ?? "";

    // The run holds the drain open for its grace period.
    const drained = remote.runtime.drain(60_000);
    await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.UNAVAILABLE, 10_000, "UNAVAILABLE");

    expect((await viaBackend.interaction.getRun({ worker: worker?.ref, runId })).run?.status).toBe(RunStatus.RUNNING);
    // Listing across runtimes still shows its workers rather than naming it failed.
    const listed = await viaBackend.catalog.listWorkers({});
    expect(listed.workers.map((w) => w.ref?.workerId)).toContain(worker?.ref?.workerId);
    expect(listed.failedRuntimes.map((f) => f.runtimeId)).not.toContain("rs");
    const transcript = await viaBackend.observation.readTranscript({ worker: worker?.ref });
    expect(transcript.entries.length).toBeGreaterThan(0);
    const abort = new AbortController();
    const watch = viaBackend.observation.watchWorker({ worker: worker?.ref }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await watch.next()).done).toBe(false);
    abort.abort();
    await watch.return?.();
    await expectReason(
      () => viaBackend.interaction.sendInput({ worker: worker?.ref, input: { text: "more" } }),
      Code.Unavailable,
      ErrorReason.RUNTIME_DRAINING,
    );
    expect((await viaBackend.interaction.cancelRun({ worker: worker?.ref, runId })).run?.status).toBe(RunStatus.CANCELLED);
    await drained;
  }, 40_000);
});
