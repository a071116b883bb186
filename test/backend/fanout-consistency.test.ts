import { create } from "@bufbuild/protobuf";
import { createClient, createRouterTransport, type Client, type Interceptor } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { CreateWorkerRequestSchema, WorkerCatalog, type ListWorkersRequest } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { eventually, startHarness, type Harness } from "../support/harness.js";

/**
 * ListWorkers across runtimes while a runtime's workers change between the
 * Backend's calls within one page: a worker that exists throughout the
 * listing is listed exactly once. Real runtime servers on port 0; the
 * Backend's routes on a router transport; the change is made by a client
 * interceptor on the Backend's transport to one runtime (the Backend's
 * `runtimeInterceptors` option), right after that runtime answered.
 */
let backend: Backend;
let catalog: Client<typeof WorkerCatalog>;
const harnesses = new Map<string, Harness>();
/** Runs once after runtime "c" answers a ListWorkers of this page size. */
let afterListOfC: { pageSize: number; change: () => Promise<void> } | undefined;

const changeAfterList: Interceptor = (next) => async (request) => {
  const response = await next(request);
  const pending = afterListOfC;
  if (pending && request.method.name === "ListWorkers" && (request.message as ListWorkersRequest).pageSize === pending.pageSize) {
    afterListOfC = undefined;
    await pending.change();
  }
  return response;
};

beforeAll(async () => {
  const counts: Record<string, number> = { a: 1, b: 1, c: 3 };
  for (const [runtimeId, count] of Object.entries(counts)) {
    const harness = await startHarness({ runtimeId });
    harnesses.set(runtimeId, harness);
    for (let i = 0; i < count; i++) {
      await harness.runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId, displayName: `${runtimeId}-${i}` }));
    }
  }
  backend = createBackend({
    runtime: await createRuntime({ logger: silentLogger, runtimeId: "z-emb" }),
    logger: silentLogger,
    remotes: ["a", "b", "c"].map((runtimeId) => ({ runtimeId, url: harnesses.get(runtimeId)?.baseUrl ?? "" })),
    runtimeInterceptors: (runtimeId) => (runtimeId === "c" ? [changeAfterList] : []),
  });
  catalog = createClient(WorkerCatalog, createRouterTransport(backend.routes));
  await eventually(() => backend.directory.sorted().every((c) => c.health === RuntimeHealth.READY), 10_000, "READY");
});

afterAll(async () => {
  backend?.close();
  for (const harness of harnesses.values()) await harness.close();
});

describe("ListWorkers across runtimes while workers change", () => {
  it("never skips a worker that exists throughout, when a runtime's answer changes before the page's token is fetched", async () => {
    const c = harnesses.get("c");
    const workersOfC = (await catalog.listWorkers({ runtimeId: "c", pageSize: 10 })).workers;
    // Page 1 (size 3): a-0, b-0, then c is asked for 2 and only 1 fits; c-0 is deleted right after c answered.
    afterListOfC = {
      pageSize: 2,
      change: async () => {
        await c?.runtime.deleteWorker({ worker: workersOfC[0]?.ref, force: true });
      },
    };
    const names: string[] = [];
    let pageToken = "";
    do {
      const page = await catalog.listWorkers({ pageSize: 3, pageToken });
      expect(page.failedRuntimes).toEqual([]);
      names.push(...page.workers.map((w) => w.displayName));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(afterListOfC).toBeUndefined(); // the change did happen within the listing
    // c-0 may or may not be listed (it was deleted during the listing); c-1 and c-2 existed throughout.
    expect(names.filter((name) => name !== "c-0")).toEqual(["a-0", "b-0", "c-1", "c-2"]);
    expect(new Set(names).size).toBe(names.length);
  });
});
