import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Page, Route } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ListRuntimesResponseSchema, RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import type { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ListWorkersResponseSchema, WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import type { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { type ConsoleWithBrowser, startConsoleWithBrowser } from "./console-process.js";

/**
 * The console against a newer peer: a worker status and a runtime health
 * this build has no word for (a value a later runtime or Backend added).
 * The Backend's real answers are rewritten on their way into the page, as
 * no build here sends such a value.
 */

// Each poll waits for Chromium to show what a real server sent: seconds on a loaded machine.
vi.setConfig({ expect: { poll: { timeout: 20_000 } } });

// Open enums: a value past the last one this build knows decodes as its number.
const NEWER_STATUS = 9 as WorkerStatus;
const NEWER_HEALTH = 11 as RuntimeHealth;

let server: ConsoleWithBrowser;
let page: Page;

beforeAll(async () => {
  server = await startConsoleWithBrowser({ dataDirPrefix: "console-newer-peer-", provider: false });
  const transport = createGrpcTransport({ baseUrl: `http://${server.h2c}` });
  const { runtimes } = await createClient(RuntimeRegistry, transport).listRuntimes({});
  await createClient(WorkerCatalog, transport).createWorker({
    runtimeId: runtimes.find((runtime) => runtime.embedded)!.runtimeId,
    displayName: "From the future",
    profile: { source: { case: "builtin", value: "companion" } },
  });
  page = await server.browser.newPage();
});

afterAll(async () => {
  await server?.close();
});

/** Answers the page's call with the Backend's real answer, changed by `change` (Connect unary, binary). */
async function rewritten(route: Route, change: (body: Uint8Array) => Uint8Array): Promise<void> {
  const response = await route.fetch();
  const headers = { ...response.headers() };
  delete headers["content-encoding"];
  delete headers["content-length"];
  await route.fulfill({ status: response.status(), headers, body: Buffer.from(change(await response.body())) });
}

describe("the console against a newer peer", () => {
  it("names a worker status and a runtime health it does not know by their numbers", async () => {
    await page.route("**/ListWorkers", (route) =>
      rewritten(route, (body) => {
        const list = fromBinary(ListWorkersResponseSchema, body);
        for (const worker of list.workers) worker.status = NEWER_STATUS;
        return toBinary(ListWorkersResponseSchema, list);
      }),
    );
    await page.route("**/ListRuntimes", (route) =>
      rewritten(route, (body) => {
        const list = fromBinary(ListRuntimesResponseSchema, body);
        for (const runtime of list.runtimes) runtime.health = NEWER_HEALTH;
        return toBinary(ListRuntimesResponseSchema, list);
      }),
    );
    await page.goto(server.url);
    const status = page.locator(".sidebar .worker", { hasText: "From the future" }).locator(".worker-status");
    // A bare "unknown" read as a broken peer's UNSPECIFIED; the number says which value it is.
    await expect.poll(() => status.textContent()).toBe(`unknown (${NEWER_STATUS})`);
    const health = page.locator(".sidebar .runtime .health");
    await expect.poll(() => health.first().textContent()).toBe(`unknown (${NEWER_HEALTH})`);
    expect(await health.first().getAttribute("class")).toBe("health unknown");
  });
});
