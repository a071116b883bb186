import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../../gen/worker_runtime/v1/backend_pb.js";
import { RuntimeRegistry } from "../../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { startCli, type CliProcess } from "../../support/cli-process.js";
import { eventually } from "../../support/harness.js";
import { jsonLines, runClient, serveRuntime, type ServedRuntime } from "./client-support.js";

/**
 * `runtimes add`, `update` and `remove` against a real `worker-runtime
 * backend` process and a real remote `serve` that requires a token: the
 * Backend's registry changes as the commands say, the runtime's token
 * travels from --runtime-token-file, bad values are the user's (exit 2)
 * naming their argument, and a plain runtime says it keeps no registry.
 */

let remote: ServedRuntime;
let backend: CliProcess;
let server: string;
let session: Http2SessionManager;
let registry: Client<typeof RuntimeRegistry>;
const dir = mkdtempSync(path.join(tmpdir(), "wr-cli-registry-"));
const tokenFile = path.join(dir, "remote.token");
const wrongTokenFile = path.join(dir, "wrong.token");

beforeAll(async () => {
  remote = await serveRuntime({ runtimeId: "rt-far", token: "remote-secret" });
  writeFileSync(tokenFile, "remote-secret\n");
  writeFileSync(wrongTokenFile, "not-the-secret\n");
  backend = startCli(["backend", "--host", "127.0.0.1", "--port", "0", "--runtime-id", "rt-home", "--shutdown-grace-ms", "200"]);
  server = `http://${(await backend.listening).h2c}`;
  session = new Http2SessionManager(server);
  registry = createClient(RuntimeRegistry, createGrpcTransport({ baseUrl: server, sessionManager: session }));
});

afterAll(async () => {
  session?.abort();
  backend?.child.kill("SIGTERM");
  await Promise.race([backend?.exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
  backend?.kill();
  await remote?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The health the Backend's registry shows for a runtime id (undefined: not registered), asked with the generated client. */
async function listedHealth(runtimeId: string): Promise<RuntimeHealth | undefined> {
  const { runtimes } = await registry.listRuntimes({});
  return runtimes.find((entry) => entry.runtimeId === runtimeId)?.health;
}

describe("runtimes add, update and remove against a real Backend", () => {
  it("adds a runtime with a wrong token, re-points it with the right one, and removes it", async () => {
    const added = await runClient(["runtimes", "add", "rt-far", remote.url, "--runtime-token-file", wrongTokenFile], { server });
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/^rt-far (connecting|unauthenticated)/);
    await eventually(async () => (await listedHealth("rt-far")) === RuntimeHealth.UNAUTHENTICATED, 15_000, "rt-far refuses the token");

    const updated = await runClient(["runtimes", "update", "rt-far", remote.url, "--runtime-token-file", tokenFile, "--output", "json"], {
      server,
    });
    expect(updated.code, updated.stderr).toBe(0);
    const [shown] = jsonLines(updated.stdout);
    expect(shown?.["runtimeId"]).toBe("rt-far");
    expect(shown?.["hasCredentials"]).toBe(true);
    // The token is write-only: never printed back.
    expect(updated.stdout).not.toContain("remote-secret");
    // The runtime's own token went from the file (a wrong one above is what made it UNAUTHENTICATED).
    await eventually(async () => (await listedHealth("rt-far")) === RuntimeHealth.READY, 15_000, "rt-far READY with its token");

    // An update without the token would drop it: refused (exit 2) unless --no-token says so.
    const tokenless = await runClient(["runtimes", "update", "rt-far", remote.url], { server });
    expect(tokenless.code).toBe(2);
    expect(tokenless.stderr).toContain("--no-token");
    expect(await listedHealth("rt-far")).toBe(RuntimeHealth.READY);

    const removed = await runClient(["runtimes", "remove", "rt-far"], { server });
    expect([removed.code, removed.stdout.trim()]).toEqual([0, "removed rt-far"]);
    expect(await listedHealth("rt-far")).toBeUndefined();
  });

  it("refuses bad values as the user's mistake (exit 2) naming the argument, and an unknown id with exit 5", async () => {
    const badUrl = await runClient(["runtimes", "add", "rt-x", "ftp://127.0.0.1:1"], { server });
    expect(badUrl.code, badUrl.stderr).toBe(2);
    expect(badUrl.stderr).toMatch(/^worker-runtime: URL\b/);
    const badId = await runClient(["runtimes", "add", "not/an id", "http://127.0.0.1:1"], { server });
    expect(badId.code, badId.stderr).toBe(2);
    expect(badId.stderr).toMatch(/^worker-runtime: RUNTIME_ID\b/);
    const unknown = await runClient(["runtimes", "update", "rt-nowhere", "http://127.0.0.1:1"], { server });
    expect(unknown.code, unknown.stderr).toBe(5);
    const embedded = await runClient(["runtimes", "remove", "rt-home"], { server });
    expect(embedded.code).toBe(8);
    expect(embedded.stderr).toContain("embedded");
    const missing = await runClient(["runtimes", "add", "rt-x", "http://127.0.0.1:1", "--runtime-token-file", path.join(dir, "none")], {
      server,
    });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--runtime-token-file");
    expect(await listedHealth("rt-x")).toBeUndefined();
  });

  it("says a plain runtime keeps no registry", async () => {
    const result = await runClient(["runtimes", "add", "rt-x", "http://127.0.0.1:1"], {
      server: remote.url,
      env: { WORKER_RUNTIME_TOKEN: "remote-secret" },
    });
    expect(result.code).toBe(8);
    expect(result.stderr).toContain("it is a runtime, not a Backend");
  });
});
