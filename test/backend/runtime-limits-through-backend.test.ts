import { Code, createRouterTransport } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { type Backend, createBackend } from "../../src/backend/index.js";
import { ROUTED_LIST_CEILING } from "../../src/backend/request-checks.js";
import { createRuntime, DEFAULT_LIMITS, silentLogger } from "../../src/runtime/index.js";
import { expectError, expectReason } from "../support/errors.js";
import { type Clients, clientsFor, eventually, type Harness, startHarness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A remote runtime whose operator raised its mount and label limits is
 * used up to them through a Backend: the Backend counts a CreateWorker's
 * mounts and labels only against the ceiling that protects the Backend
 * itself (relaying re-encodes the request), and leaves each runtime's own
 * limits to it, whose LIMIT_EXCEEDED comes back unchanged; a ListWorkers
 * routed to it by runtime_id likewise for its label selector, and one fanned
 * out across runtimes that all raised their limits. The Backend used
 * to count them against the default limits (8 mounts, 32 labels), so such a
 * runtime refused through the Backend what it accepts direct. A runtime
 * whose limits are above that ceiling is refused past it by the Backend,
 * which says the bound is its own. Real runtime servers on 127.0.0.1,
 * reached by the Backend over HTTP/2.
 */
const RAISED = { maxMounts: 12, maxLabels: 48 };
/** A runtime whose limits are above the Backend's own ceiling. */
const ABOVE_CEILING = { maxMounts: 2 * ROUTED_LIST_CEILING, maxLabels: 2 * ROUTED_LIST_CEILING };

let dir: string;
let harness: Harness;
let high: Harness;
let backend: Backend;
let viaBackend: Clients;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "backend-limits-"));
  harness = await startHarness({
    runtimeId: "rl",
    executionBackend: new ScriptedBackend(),
    workspaceRoots: { work: join(dir, "work"), data: join(dir, "data") },
    limits: RAISED,
  });
  high = await startHarness({ runtimeId: "rh", executionBackend: new ScriptedBackend(), limits: ABOVE_CEILING });
  backend = createBackend({
    runtime: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    logger: silentLogger,
    remotes: [
      { runtimeId: "rl", url: harness.baseUrl },
      { runtimeId: "rh", url: high.baseUrl },
    ],
  });
  viaBackend = clientsFor(createRouterTransport(backend.routes));
  await eventually(() => backend.directory.get("rl")?.health === RuntimeHealth.READY, 10_000, "READY");
  await eventually(() => backend.directory.get("rh")?.health === RuntimeHealth.READY, 10_000, "rh READY");
});

afterAll(async () => {
  backend?.close();
  await harness?.close();
  await high?.close();
  await rm(dir, { recursive: true, force: true });
});

const mounts = (n: number) => Array.from({ length: n }, (_, i) => ({ root: "data", path: `m${i}`, name: `m${i}`, writable: false }));
const labels = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));

describe("a runtime with raised mount and label limits, through a Backend", () => {
  it("accepts a CreateWorker above the defaults, within its own limits", async () => {
    expect(RAISED.maxMounts).toBeGreaterThan(DEFAULT_LIMITS.maxMounts);
    expect(RAISED.maxLabels).toBeGreaterThan(DEFAULT_LIMITS.maxLabels);
    const { worker } = await viaBackend.catalog.createWorker({
      runtimeId: "rl",
      workspace: { root: "work", path: "p" },
      mounts: mounts(RAISED.maxMounts),
      labels: labels(RAISED.maxLabels),
    });
    expect(worker?.mounts).toHaveLength(RAISED.maxMounts);
    expect(Object.keys(worker?.labels ?? {})).toHaveLength(RAISED.maxLabels);
  });

  it("lists that runtime's workers by a label selector above the default count, within its own", async () => {
    const selector = labels(RAISED.maxLabels);
    const { workers } = await viaBackend.catalog.listWorkers({ runtimeId: "rl", labelSelector: selector });
    expect(workers.length).toBeGreaterThan(0);
    const over = await expectReason(
      () => viaBackend.catalog.listWorkers({ runtimeId: "rl", labelSelector: labels(RAISED.maxLabels + 1) }),
      Code.InvalidArgument,
      ErrorReason.LIMIT_EXCEEDED,
    );
    expect(over.metadata).toEqual({ field: "label_selector", limit: String(RAISED.maxLabels) });
  });

  it("lists across runtimes by such a selector when every runtime takes it, and relays the first refusal when one does not", async () => {
    // A second Backend whose embedded runtime raised its limits too: every runtime the fan-out asks takes 48 labels.
    const raisedEverywhere = createBackend({
      runtime: await createRuntime({ logger: silentLogger, runtimeId: "emb2", limits: RAISED }),
      logger: silentLogger,
      remotes: [{ runtimeId: "rl", url: harness.baseUrl }],
    });
    try {
      const everywhere = clientsFor(createRouterTransport(raisedEverywhere.routes));
      await eventually(() => raisedEverywhere.directory.get("rl")?.health === RuntimeHealth.READY, 10_000, "rl READY");
      const selector: Record<string, string> = { ...labels(RAISED.maxLabels), across: "yes" };
      delete selector[`k${RAISED.maxLabels - 1}`];
      await viaBackend.catalog.createWorker({ runtimeId: "rl", labels: selector });
      const { workers, failedRuntimes } = await everywhere.catalog.listWorkers({ labelSelector: selector });
      expect(failedRuntimes).toEqual([]);
      expect(workers.map((w) => [w.ref?.runtimeId, w.labels["across"]])).toEqual([["rl", "yes"]]);
    } finally {
      raisedEverywhere.close();
    }
    // The first Backend's embedded runtime keeps the default 32: its refusal, as direct, answers the fan-out.
    const mixed = await expectReason(
      () => viaBackend.catalog.listWorkers({ labelSelector: labels(RAISED.maxLabels) }),
      Code.InvalidArgument,
      ErrorReason.LIMIT_EXCEEDED,
    );
    expect(mixed.metadata).toEqual({ field: "label_selector", limit: String(DEFAULT_LIMITS.maxLabels) });
  });

  it("relays the runtime's own LIMIT_EXCEEDED, naming its limit, past them", async () => {
    const overMounts = await expectReason(
      () =>
        viaBackend.catalog.createWorker({ runtimeId: "rl", workspace: { root: "work", path: "q" }, mounts: mounts(RAISED.maxMounts + 1) }),
      Code.InvalidArgument,
      ErrorReason.LIMIT_EXCEEDED,
    );
    expect(overMounts.metadata).toEqual({ field: "mounts", limit: String(RAISED.maxMounts) });
    const overLabels = await expectReason(
      () => viaBackend.catalog.createWorker({ runtimeId: "rl", labels: labels(RAISED.maxLabels + 1) }),
      Code.InvalidArgument,
      ErrorReason.LIMIT_EXCEEDED,
    );
    expect(overLabels.metadata).toEqual({ field: "labels", limit: String(RAISED.maxLabels) });
  });

  it("still refuses an absurd count itself, at the Backend's ceiling", async () => {
    const absurd = await expectReason(
      () => viaBackend.catalog.createWorker({ runtimeId: "rl", labels: labels(100_000) }),
      Code.InvalidArgument,
      ErrorReason.LIMIT_EXCEEDED,
    );
    expect(absurd.metadata).toEqual({ field: "labels", limit: String(ROUTED_LIST_CEILING) });
    const absurdMounts = await expectReason(
      () => viaBackend.catalog.createWorker({ runtimeId: "rl", mounts: mounts(ROUTED_LIST_CEILING + 1) }),
      Code.InvalidArgument,
      ErrorReason.LIMIT_EXCEEDED,
    );
    expect(absurdMounts.metadata).toEqual({ field: "mounts", limit: String(ROUTED_LIST_CEILING) });
  });
});

describe("a runtime whose limits are above the Backend's ceiling, through a Backend", () => {
  it("is refused past the ceiling by the Backend, which says the bound is its own, not the runtime's", async () => {
    const over = labels(ROUTED_LIST_CEILING + 1);
    // The runtime takes it direct, and says so in its limits.
    const direct = high.connect("grpc");
    expect((await direct.management.getRuntime({})).runtime?.limits?.maxLabels).toBe(ABOVE_CEILING.maxLabels);
    expect(Object.keys((await direct.catalog.createWorker({ runtimeId: "rh", labels: over })).worker?.labels ?? {})).toHaveLength(
      ROUTED_LIST_CEILING + 1,
    );
    const refusals: [string, string, () => Promise<unknown>][] = [
      ["labels", "labels", () => viaBackend.catalog.createWorker({ runtimeId: "rh", labels: over })],
      ["mounts", "mounts", () => viaBackend.catalog.createWorker({ runtimeId: "rh", mounts: mounts(ROUTED_LIST_CEILING + 1) })],
      ["label_selector", "labels", () => viaBackend.catalog.listWorkers({ runtimeId: "rh", labelSelector: over })],
    ];
    for (const [field, what, call] of refusals) {
      const { error, detail } = await expectError(call);
      expect([error.code, detail?.reason, detail?.metadata], field).toEqual([
        Code.InvalidArgument,
        ErrorReason.LIMIT_EXCEEDED,
        { field, limit: String(ROUTED_LIST_CEILING) },
      ]);
      // Without this the client saw "at most 1024" from a runtime whose limits say 2048, and no word of why.
      expect(error.rawMessage, field).toBe(
        `${field}: has ${ROUTED_LIST_CEILING + 1} ${what}; at most ${ROUTED_LIST_CEILING} through a Backend ` +
          "(the Backend's own ceiling, whatever a runtime's limits; call the runtime directly for more)",
      );
    }
  });
});
