import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { startRuntimeServer, type RuntimeServer } from "../../src/server/index.js";

/**
 * The Backend on the runtime server's listeners: RPCs are routed to the
 * Backend's services, anything else goes to the static-file hook (where the
 * console will be served), and no CORS headers are sent.
 */
let backend: Backend;
let server: RuntimeServer;

beforeAll(async () => {
  const runtime = await createRuntime({ logger: silentLogger, runtimeId: "emb" });
  backend = createBackend({ runtime, logger: silentLogger });
  server = await startRuntimeServer({
    runtime,
    routes: backend.routes,
    host: "127.0.0.1",
    port: 0,
    http1Port: 0,
    logger: silentLogger,
    fallback: (request, response) => {
      response.writeHead(request.url === "/" ? 200 : 404, { "content-type": "text/html" });
      response.end(request.url === "/" ? "<h1>console</h1>" : "");
    },
  });
});

afterAll(async () => {
  backend?.close();
  await server?.close(0);
});

describe("the Backend's listeners", () => {
  it("serves RPCs and hands every other path to the static-file hook, with no CORS headers", async () => {
    const baseUrl = `http://${server.http1Address}`;
    const registry = createClient(RuntimeRegistry, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
    expect((await registry.listRuntimes({})).runtimes.map((r) => r.runtimeId)).toEqual(["emb"]);
    const page = await fetch(`${baseUrl}/`, { headers: { origin: "http://elsewhere.example" } });
    expect(page.status).toBe(200);
    expect(await page.text()).toBe("<h1>console</h1>");
    expect(page.headers.get("access-control-allow-origin")).toBeNull();
    expect((await fetch(`${baseUrl}/missing`)).status).toBe(404);
    const preflight = await fetch(`${baseUrl}/worker_runtime.v1.RuntimeRegistry/ListRuntimes`, {
      method: "OPTIONS",
      headers: { origin: "http://elsewhere.example", "access-control-request-method": "POST" },
    });
    expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
  });
});
