import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { CreateWorkerRequestSchema, WorkerCatalog, type CreateWorkerRequest } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { eventually, startHarness, type Harness } from "../support/harness.js";

/**
 * ListWorkers across runtimes, in process (real runtime servers on port 0,
 * the Backend's routes on a router transport): page tokens name runtimes by
 * id, so a listing continues correctly while runtimes are removed and added.
 */
let backend: Backend;
let catalog: Client<typeof WorkerCatalog>;
const harnesses = new Map<string, Harness>();

beforeAll(async () => {
  for (const runtimeId of ["r1", "r2", "r3", "r25", "r0"]) {
    const harness = await startHarness({ runtimeId });
    harnesses.set(runtimeId, harness);
    for (let i = 0; i < 2; i++) await harness.runtime.createWorker(createRequest(runtimeId, `${runtimeId}-${i}`));
  }
  const embedded = await createRuntime({ logger: silentLogger, runtimeId: "z-emb" });
  await embedded.createWorker(createRequest("z-emb", "z-emb-0"));
  backend = createBackend({
    runtime: embedded,
    logger: silentLogger,
    remotes: ["r1", "r2", "r3"].map((runtimeId) => ({ runtimeId, url: harnesses.get(runtimeId)?.baseUrl ?? "" })),
  });
  catalog = createClient(WorkerCatalog, createRouterTransport(backend.routes));
  await eventually(() => backend.directory.sorted().every((c) => c.health === RuntimeHealth.READY), 10_000, "READY");
});

afterAll(async () => {
  backend?.close();
  for (const harness of harnesses.values()) await harness.close();
});

function createRequest(runtimeId: string, displayName: string): CreateWorkerRequest {
  return create(CreateWorkerRequestSchema, { runtimeId, displayName });
}

describe("ListWorkers across runtimes", () => {
  it("continues a listing by runtime id while runtimes are removed and added", async () => {
    const first = await catalog.listWorkers({ pageSize: 3 });
    expect(first.workers.map((w) => w.displayName)).toEqual(["r1-0", "r1-1", "r2-0"]);
    // The page ended inside r2. r2 goes away; r25 (after r2) and r0 (before it) come.
    backend.directory.remove("r2");
    backend.addRemote({ runtimeId: "r25", url: harnesses.get("r25")?.baseUrl ?? "" });
    backend.addRemote({ runtimeId: "r0", url: harnesses.get("r0")?.baseUrl ?? "" });
    await eventually(() => backend.directory.sorted().every((c) => c.health === RuntimeHealth.READY), 10_000, "READY");
    const names: string[] = [];
    let pageToken = first.nextPageToken;
    while (pageToken !== "") {
      const page = await catalog.listWorkers({ pageSize: 3, pageToken });
      expect(page.failedRuntimes).toEqual([]);
      names.push(...page.workers.map((w) => w.displayName));
      pageToken = page.nextPageToken;
    }
    // r2's rest is gone with it, r0 sorts before the position, r25 after it.
    expect(names).toEqual(["r25-0", "r25-1", "r3-0", "r3-1", "z-emb-0"]);
    expect((await catalog.listWorkers({ pageSize: 100 })).workers.map((w) => w.displayName)).toEqual([
      "r0-0",
      "r0-1",
      "r1-0",
      "r1-1",
      "r25-0",
      "r25-1",
      "r3-0",
      "r3-1",
      "z-emb-0",
    ]);
  });

  it("refuses a page token it did not issue (PAGE_TOKEN_INVALID, as the proto says) and a negative page size with INVALID_ARGUMENT", async () => {
    for (const [request, reason] of [
      [{ pageToken: "bm90LWEtdG9rZW4" }, ErrorReason.PAGE_TOKEN_INVALID],
      [{ pageSize: -1 }, ErrorReason.INVALID_ARGUMENT],
    ] as const) {
      const error = await catalog.listWorkers(request).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(error?.code).toBe(Code.InvalidArgument);
      expect(error?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(reason);
    }
  });

  it("refuses a ListRuntimes page token it did not issue the same way (PAGE_TOKEN_INVALID)", async () => {
    const registry = createClient(RuntimeRegistry, createRouterTransport(backend.routes));
    const error = await registry.listRuntimes({ pageToken: "bm90LWEtdG9rZW4" }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(error?.code).toBe(Code.InvalidArgument);
    expect(error?.findDetails(ErrorDetailSchema)[0]).toMatchObject({
      reason: ErrorReason.PAGE_TOKEN_INVALID,
      metadata: { field: "page_token" },
    });
  });

  it("refuses a page token reused with other filters, as a runtime does (PAGE_TOKEN_INVALID)", async () => {
    // One token ends inside a runtime (its own token goes on), one between runtimes (none does).
    for (const pageSize of [1, 2]) {
      const first = await catalog.listWorkers({ pageSize });
      expect(first.nextPageToken).not.toBe("");
      const error = await catalog.listWorkers({ pageSize, pageToken: first.nextPageToken, labelSelector: { team: "a" } }).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(error?.code).toBe(Code.InvalidArgument);
      expect(error?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.PAGE_TOKEN_INVALID);
      // page_size alone may change between pages.
      const page = await catalog.listWorkers({ pageSize: pageSize + 1, pageToken: first.nextPageToken });
      expect(page.failedRuntimes).toEqual([]);
      expect(page.workers.length).toBe(pageSize + 1);
    }
  });

  it("answers a runtime's refusal of the page token with that typed error, never as a failed runtime skipped over", async () => {
    const first = await catalog.listWorkers({ pageSize: 1 });
    const inside = backend.directory.sorted()[0]?.runtimeId as string;
    const other = backend.directory.sorted()[1]?.runtimeId as string;
    // The same position, its runtime's own token replayed to another runtime.
    const fields = JSON.parse(Buffer.from(first.nextPageToken, "base64url").toString("utf8")) as unknown[];
    expect(fields).toContain(inside);
    const replayed = Buffer.from(JSON.stringify(fields.map((f) => (f === inside ? other : f)))).toString("base64url");
    const error = await catalog.listWorkers({ pageSize: 1, pageToken: replayed }).then(
      (page) => page,
      (e: unknown) => ConnectError.from(e),
    );
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.InvalidArgument);
    expect((error as ConnectError).findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.PAGE_TOKEN_INVALID);
    expect(backend.directory.get(other)?.health).toBe(RuntimeHealth.READY);
  });

  it("does not count a client's own short deadline against the runtime's health", async () => {
    const r1 = backend.directory.get("r1");
    expect(r1?.health).toBe(RuntimeHealth.READY);
    const ref = (await catalog.listWorkers({ runtimeId: "r1" })).workers[0]?.ref;
    const codes = new Set<Code>();
    for (let i = 0; i < 10; i++) {
      await catalog.getWorker({ worker: ref }, { timeoutMs: 1 }).catch((e: unknown) => codes.add(ConnectError.from(e).code));
      await catalog.listWorkers({ pageSize: 100 }, { timeoutMs: 1 }).catch((e: unknown) => codes.add(ConnectError.from(e).code));
    }
    expect(codes).toContain(Code.DeadlineExceeded);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(r1?.health).toBe(RuntimeHealth.READY);
    expect(r1?.snapshot.failedAttempts).toBe(0);
  });
});
