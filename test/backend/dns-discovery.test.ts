import type { LookupAddress } from "node:dns";
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { CreateWorkerRequestSchema, WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { type Backend, createBackend, type DiscoveryResolver, DnsDiscovery, type SrvAnswer } from "../../src/backend/index.js";
import { createRuntime, type Logger, silentLogger } from "../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../src/server/index.js";
import { eventually, type Harness, startHarness } from "../support/harness.js";

/**
 * DNS discovery against real runtime servers on 127.0.0.1 and a Backend
 * served over real HTTP/2. The DNS is a test resolver whose answers the test
 * changes: SRV targets are pod-style names (`runtimes-0.runtimes.test.svc…`)
 * that only this resolver knows, so a runtime that becomes READY was reached
 * by its name through the resolver, as a pod is reached by its stable name.
 */

const TOKEN = "discovery-test-token";
const ZONE = "runtimes.test.svc.cluster.local";
const SRV_NAME = `_grpc._tcp.${ZONE}`;

/** A DNS whose SRV answers (or failure) the test sets; every host it names is 127.0.0.1. */
class TestResolver implements DiscoveryResolver {
  answers: SrvAnswer[] | NodeJS.ErrnoException = [];
  lookups = 0;
  readonly hosts = new Set<string>();

  resolveSrv(name: string): Promise<SrvAnswer[]> {
    this.lookups++;
    if (name !== SRV_NAME) return Promise.reject(dnsError("ENOTFOUND"));
    const answers = this.answers;
    return answers instanceof Error ? Promise.reject(answers) : Promise.resolve(answers.map((a) => ({ ...a })));
  }

  lookup(hostname: string): Promise<LookupAddress[]> {
    return this.hosts.has(hostname) ? Promise.resolve([{ address: "127.0.0.1", family: 4 }]) : Promise.reject(dnsError("ENOTFOUND"));
  }

  /** Answers with these pods (each a runtime harness), and resolves their names. */
  serve(...pods: string[]): void {
    this.answers = pods.map((pod) => {
      const name = `${pod}.${ZONE}`;
      this.hosts.add(name);
      return { name: `${name}.`, port: Number(new URL(remotes.get(pod)?.baseUrl ?? "").port) };
    });
  }
}

function dnsError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`queryServ ${code}`), { code });
}

/** A logger keeping warnings, so the tests can see what discovery reported. */
function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { info() {}, error() {}, warn: (message) => warnings.push(message), warnings };
}

const remotes = new Map<string, Harness>();
let backend: Backend;
let backendServer: RuntimeServer;
let session: Http2SessionManager;
let registry: Client<typeof RuntimeRegistry>;
let catalog: Client<typeof WorkerCatalog>;
const discoveries: DnsDiscovery[] = [];

beforeAll(async () => {
  for (const pod of ["runtimes-0", "runtimes-1"]) {
    const harness = await startHarness({ runtimeId: pod, token: TOKEN });
    remotes.set(pod, harness);
    await harness.runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: pod, displayName: `${pod}-worker` }));
  }
  const embedded = await createRuntime({ logger: silentLogger, runtimeId: "backend-embedded" });
  backend = createBackend({ runtime: embedded, logger: silentLogger, backoff: { initialMs: 50, maxMs: 200 } });
  backendServer = await startRuntimeServer({ runtime: embedded, routes: backend.routes, host: "127.0.0.1", port: 0, logger: silentLogger });
  const baseUrl = `http://${backendServer.h2Address}`;
  session = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({ baseUrl, sessionManager: session });
  registry = createClient(RuntimeRegistry, transport);
  catalog = createClient(WorkerCatalog, transport);
});

afterEach(() => {
  for (const discovery of discoveries.splice(0)) discovery.stop();
  for (const connection of backend.directory.sorted()) if (!connection.embedded) backend.directory.remove(connection.runtimeId);
});

afterAll(async () => {
  session?.abort();
  backend?.close();
  await backendServer?.close(0);
  for (const harness of remotes.values()) await harness.close();
});

function discover(resolver: TestResolver, logger: Logger = silentLogger, intervalMs = 30): DnsDiscovery {
  const discovery = new DnsDiscovery({
    name: SRV_NAME,
    intervalMs,
    missesBeforeRemoval: 3,
    directory: backend.directory,
    addRemote: (spec) => backend.addRemote(spec),
    repointRemote: (spec) => backend.repointRemote(spec),
    token: () => TOKEN,
    resolver,
    logger,
  });
  discoveries.push(discovery);
  return discovery;
}

/** What the Backend's registry lists over the wire: runtime id → health. */
async function listed(): Promise<Map<string, RuntimeHealth>> {
  const { runtimes } = await registry.listRuntimes({});
  return new Map(runtimes.map((r) => [r.runtimeId, r.health]));
}

async function workerNames(): Promise<string[]> {
  const page = await catalog.listWorkers({ pageSize: 100 });
  return page.workers.map((w) => w.displayName).sort();
}

describe("DNS discovery", () => {
  it("adds runtimes as they appear in the answers and drops them after they disappear", async () => {
    const resolver = new TestResolver();
    discover(resolver).start();
    await eventually(() => resolver.lookups >= 2, 5_000, "lookups");
    expect([...(await listed()).keys()]).toEqual(["backend-embedded"]);

    resolver.serve("runtimes-0");
    await eventually(async () => (await listed()).get("runtimes-0") === RuntimeHealth.READY, 10_000, "runtimes-0 READY");
    expect(backend.directory.get("runtimes-0")?.endpoint).toBe(
      `http://runtimes-0.${ZONE}:${new URL(remotes.get("runtimes-0")?.baseUrl ?? "").port}`,
    );
    expect(backend.directory.get("runtimes-0")?.hasCredentials).toBe(true);
    expect(await workerNames()).toEqual(["runtimes-0-worker"]);

    resolver.serve("runtimes-0", "runtimes-1");
    await eventually(async () => (await listed()).get("runtimes-1") === RuntimeHealth.READY, 10_000, "runtimes-1 READY");
    expect(await workerNames()).toEqual(["runtimes-0-worker", "runtimes-1-worker"]);

    resolver.serve("runtimes-1");
    await eventually(async () => !(await listed()).has("runtimes-0"), 10_000, "runtimes-0 removed");
    expect([...(await listed()).keys()]).toEqual(["backend-embedded", "runtimes-1"]);
    expect(await workerNames()).toEqual(["runtimes-1-worker"]);

    // No ready pod at all: the name has no records (NXDOMAIN), which empties the set too.
    resolver.answers = dnsError("ENOTFOUND");
    await eventually(async () => !(await listed()).has("runtimes-1"), 10_000, "runtimes-1 removed");
    expect(await workerNames()).toEqual([]);
  });

  it("says once when the name has no records (a wrong name looks like no ready runtime), and again after they come back", async () => {
    const resolver = new TestResolver();
    const logger = recordingLogger();
    const noRecords = (): number => logger.warnings.filter((w) => w.startsWith("dns discovery: the name has no records")).length;
    resolver.answers = dnsError("ENOTFOUND");
    discover(resolver, logger).start();
    await eventually(() => resolver.lookups >= 5, 5_000, "lookups without records");
    expect(noRecords()).toBe(1);
    resolver.serve("runtimes-0");
    await eventually(() => backend.directory.get("runtimes-0") !== undefined, 5_000, "runtimes-0 discovered");
    resolver.answers = [];
    const before = resolver.lookups;
    await eventually(() => resolver.lookups >= before + 3, 5_000, "empty answers");
    expect(noRecords()).toBe(2);
  });

  it("keeps every runtime through failed lookups", async () => {
    const resolver = new TestResolver();
    const logger = recordingLogger();
    discover(resolver, logger).start();
    resolver.serve("runtimes-0", "runtimes-1");
    await eventually(
      async () => [...(await listed()).values()].filter((h) => h === RuntimeHealth.READY).length === 3,
      10_000,
      "both discovered runtimes READY",
    );
    const connections = ["runtimes-0", "runtimes-1"].map((id) => backend.directory.get(id));
    for (const code of ["ESERVFAIL", "ETIMEOUT", "ECONNREFUSED"]) {
      resolver.answers = dnsError(code);
      const before = resolver.lookups;
      // Far more failed lookups than the misses that would remove a runtime.
      await eventually(() => resolver.lookups >= before + 6, 5_000, `failed lookups (${code})`);
    }
    expect(await listed()).toEqual(
      new Map([
        ["backend-embedded", RuntimeHealth.READY],
        ["runtimes-0", RuntimeHealth.READY],
        ["runtimes-1", RuntimeHealth.READY],
      ]),
    );
    expect(["runtimes-0", "runtimes-1"].map((id) => backend.directory.get(id))).toEqual(connections);
    expect(await workerNames()).toEqual(["runtimes-0-worker", "runtimes-1-worker"]);
    // One warning per kind of failure, not one per lookup (each failed 6 times or more).
    const lookupWarnings = (): number =>
      logger.warnings.filter((w) => w === "dns discovery lookup failed; keeping the current runtimes").length;
    expect(lookupWarnings()).toBe(3);
    // A good answer ends the outage: the next failure is reported again.
    resolver.serve("runtimes-0", "runtimes-1");
    let before = resolver.lookups;
    await eventually(() => resolver.lookups >= before + 2, 5_000, "good lookups");
    resolver.answers = dnsError("ESERVFAIL");
    before = resolver.lookups;
    await eventually(() => resolver.lookups >= before + 3, 5_000, "failed lookups again");
    expect(lookupWarnings()).toBe(4);
  });

  it("removes a runtime only after the set number of answers in a row lack it", async () => {
    const resolver = new TestResolver();
    const discovery = discover(resolver);
    resolver.serve("runtimes-0");
    await discovery.refresh();
    const connection = backend.directory.get("runtimes-0");
    expect(connection).toBeDefined();
    resolver.serve();
    await discovery.refresh();
    await discovery.refresh();
    resolver.serve("runtimes-0");
    await discovery.refresh();
    // Two misses, then back: the same registration, and the count starts again.
    expect(backend.directory.get("runtimes-0")).toBe(connection);
    resolver.serve();
    await discovery.refresh();
    await discovery.refresh();
    expect(backend.directory.get("runtimes-0")).toBe(connection);
    await discovery.refresh();
    expect(backend.directory.get("runtimes-0")).toBeUndefined();
    expect(connection?.isClosed).toBe(true);
    expect(discovery.runtimeIds).toEqual([]);
  });

  it("never touches runtimes it did not register, and skips an id that is taken", async () => {
    const resolver = new TestResolver();
    const logger = recordingLogger();
    const discovery = discover(resolver, logger);
    const configured = backend.addRemote({ runtimeId: "runtimes-1", url: remotes.get("runtimes-1")?.baseUrl ?? "", token: () => TOKEN });
    resolver.serve("runtimes-0", "runtimes-1");
    resolver.answers = [
      ...(resolver.answers as SrvAnswer[]),
      { name: "backend-embedded.runtimes.test.svc.cluster.local", port: 7070 },
      { name: "Not_A-valid!id.runtimes.test.svc.cluster.local", port: 7070 },
    ];
    await discovery.refresh();
    await discovery.refresh();
    expect(discovery.runtimeIds).toEqual(["runtimes-0"]);
    expect(backend.directory.get("runtimes-1")).toBe(configured);
    expect(backend.directory.get("backend-embedded")?.embedded).toBe(true);
    expect(logger.warnings.filter((w) => w === "dns discovery skips a runtime id that is already registered")).toHaveLength(2);
    expect(logger.warnings).toContain("dns discovery ignores a record");

    resolver.serve();
    for (let i = 0; i < 5; i++) await discovery.refresh();
    expect(backend.directory.get("runtimes-0")).toBeUndefined();
    expect(backend.directory.get("runtimes-1")).toBe(configured);
    expect(configured.isClosed).toBe(false);
  });

  it("re-points a runtime whose target port changed in place, keeping its registration", async () => {
    const resolver = new TestResolver();
    const discovery = discover(resolver);
    resolver.serve("runtimes-0");
    await discovery.refresh();
    const first = backend.directory.get("runtimes-0");
    await eventually(() => first?.health === RuntimeHealth.READY, 10_000, "runtimes-0 READY");
    resolver.answers = [{ name: `runtimes-0.${ZONE}`, port: 1 }];
    await discovery.refresh();
    // The same connection, so the watches relayed from it wait for the new address instead of ending.
    expect(backend.directory.get("runtimes-0")).toBe(first);
    expect(first?.isClosed).toBe(false);
    expect(first?.endpoint).toBe(`http://runtimes-0.${ZONE}:1`);
    await eventually(() => first?.health === RuntimeHealth.UNAVAILABLE, 10_000, "runtimes-0 UNAVAILABLE at port 1");
    resolver.serve("runtimes-0");
    await discovery.refresh();
    expect(backend.directory.get("runtimes-0")).toBe(first);
    await eventually(() => first?.health === RuntimeHealth.READY, 10_000, "runtimes-0 READY again");
  });
});
