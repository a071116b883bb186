import { Code, createClient, type Client } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import type { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { startRuntimeServer, type RuntimeServer } from "../../src/server/index.js";
import { expectError, expectReason } from "../support/errors.js";
import { selfSignedCertificate } from "../support/self-signed.js";
import { clientsFor, eventually, makeTransport, PROTOCOLS, startHarness, type Clients, type Harness } from "../support/harness.js";

/**
 * The Backend checks the request fields it acts on itself (runtime ids it
 * routes by, ListWorkers filters it fans out, AddRuntime's fields) by the
 * Runtime's rules, with the Runtime's typed errors, and never echoes a
 * huge or secret input: a real Backend server on 127.0.0.1 in front of a
 * real runtime server, generated clients over gRPC and Connect.
 */
let remote: Harness;
/** A runtime configured with a smaller label bound than the defaults the Backend checks by. */
let small: Harness;
let backend: Backend;
let server: RuntimeServer;
const sessions: Http2SessionManager[] = [];

beforeAll(async () => {
  remote = await startHarness({ runtimeId: "rs" });
  small = await startHarness({ runtimeId: "rt-small", limits: { maxLabels: 2 } });
  const embedded = await createRuntime({ logger: silentLogger, runtimeId: "emb" });
  backend = createBackend({
    runtime: embedded,
    logger: silentLogger,
    remotes: [
      { runtimeId: "rs", url: remote.baseUrl },
      { runtimeId: "rt-small", url: small.baseUrl },
    ],
  });
  server = await startRuntimeServer({ runtime: embedded, routes: backend.routes, host: "127.0.0.1", port: 0, logger: silentLogger });
  await eventually(() => backend.directory.sorted().every((c) => c.health === RuntimeHealth.READY), 10_000, "READY");
});

afterAll(async () => {
  for (const session of sessions) session.abort();
  backend?.close();
  await server?.close(0);
  await remote?.close();
  await small?.close();
});

/** Clients of the Backend (the four services and its registry) over one protocol. */
function backendClients(protocol: (typeof PROTOCOLS)[number]): Clients & { registry: Client<typeof RuntimeRegistry> } {
  const baseUrl = `http://${server.h2Address}`;
  const sessionManager = new Http2SessionManager(baseUrl);
  sessions.push(sessionManager);
  const transport = makeTransport(protocol, baseUrl, sessionManager);
  return { ...clientsFor(transport), registry: createClient(RuntimeRegistry, transport) };
}

/** Reads a stream's first message, so its error (if any) surfaces. */
async function first(stream: AsyncIterable<unknown>): Promise<unknown> {
  for await (const message of stream) return message;
  return undefined;
}

/** Runtime ids the Runtime's id rule refuses (1-64 of [A-Za-z0-9._-], not "." or ".."). */
const MALFORMED_RUNTIME_IDS: readonly [string, string][] = [
  ["dot-dot", ".."],
  ["slash", "rs/x"],
  ["newline", "rs\nx"],
  ["65 characters", "r".repeat(65)],
  ["100,000 characters", "r".repeat(100_000)],
];

describe.each(PROTOCOLS)("the Backend's own request checks over %s", (protocol) => {
  let viaBackend: ReturnType<typeof backendClients>;
  let direct: Clients;

  beforeAll(() => {
    viaBackend = backendClients(protocol);
    direct = remote.connect(protocol);
  });

  it("refuses bad ListWorkers filters across runtimes with the error a runtime gives, not a page of failed runtimes", async () => {
    const manyLabels = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "v"]));
    const cases: [string, { statuses?: WorkerStatus[]; labelSelector?: Record<string, string> }][] = [
      ["an unknown status", { statuses: [99 as WorkerStatus] }],
      ["more statuses than exist", { statuses: new Array<WorkerStatus>(100_000).fill(1 as WorkerStatus) }],
      ["a malformed label key", { labelSelector: { "Bad Key": "x" } }],
      ["too many labels", { labelSelector: manyLabels }],
      ["a label value over its bound", { labelSelector: { team: "v".repeat(257) } }],
    ];
    for (const [what, filters] of cases) {
      const want = await expectError(() => direct.catalog.listWorkers({ runtimeId: "rs", ...filters }));
      const got = await expectError(() => viaBackend.catalog.listWorkers(filters)).catch((error: unknown) => {
        throw new Error(`${what}: ${String(error)}`);
      });
      expect(got.error.code, what).toBe(want.error.code);
      expect(got.detail?.reason, what).toBe(want.detail?.reason);
      expect(got.detail?.metadata["field"], what).toBe(want.detail?.metadata["field"]);
    }
  });

  it("answers a runtime's own refusal of the filters (its configured bounds) as that error, not as a failed runtime", async () => {
    const labelSelector = { a: "1", b: "2", c: "3" };
    const want = await expectError(() => small.connect(protocol).catalog.listWorkers({ runtimeId: "rt-small", labelSelector }));
    expect(want.detail?.reason).toBe(ErrorReason.LIMIT_EXCEEDED);
    const got = await expectError(() => viaBackend.catalog.listWorkers({ labelSelector }));
    expect([got.error.code, got.detail?.reason, got.detail?.metadata]).toEqual([
      want.error.code,
      want.detail?.reason,
      want.detail?.metadata,
    ]);
  });

  describe.each(MALFORMED_RUNTIME_IDS)("a malformed runtime id (%s)", (_label, bad) => {
    it("is INVALID_ARGUMENT naming the field on every routed call, as a runtime answers it, and is not echoed", async () => {
      const calls: [string, () => Promise<unknown>][] = [
        ["worker.runtime_id", () => viaBackend.catalog.getWorker({ worker: { runtimeId: bad, workerId: "w-1" } })],
        [
          "worker.runtime_id",
          () => viaBackend.interaction.sendInput({ worker: { runtimeId: bad, workerId: "w-1" }, input: { text: "hi" } }),
        ],
        ["worker.runtime_id", () => first(viaBackend.observation.watchWorker({ worker: { runtimeId: bad, workerId: "w-1" } }))],
        ["runtime_id", () => viaBackend.catalog.listWorkers({ runtimeId: bad })],
        ["runtime_id", () => viaBackend.catalog.createWorker({ runtimeId: bad })],
        ["runtime_id", () => viaBackend.management.getRuntime({ runtimeId: bad })],
        ["runtime_id", () => first(viaBackend.observation.watchRuntime({ runtimeId: bad }))],
        ["runtime_id", () => viaBackend.registry.getRegisteredRuntime({ runtimeId: bad })],
        ["runtime_id", () => viaBackend.registry.removeRuntime({ runtimeId: bad })],
        ["runtime_id", () => viaBackend.registry.addRuntime({ runtimeId: bad, url: "http://127.0.0.1:1" })],
        ["runtime_id", () => viaBackend.registry.updateRuntime({ runtimeId: bad, url: "http://127.0.0.1:1" })],
      ];
      for (const [field, call] of calls) {
        const { error, detail } = await expectError(call);
        expect(error.code, field).toBe(Code.InvalidArgument);
        expect(detail?.reason, field).toBe(ErrorReason.INVALID_ARGUMENT);
        expect(detail?.metadata["field"], field).toBe(field);
        expect(error.rawMessage.length, field).toBeLessThan(200);
        expect(JSON.stringify(detail?.metadata ?? {}).length, field).toBeLessThan(200);
      }
      // The runtime itself answers the same.
      const { error, detail } = await expectError(() => direct.catalog.getWorker({ worker: { runtimeId: bad, workerId: "w-1" } }));
      expect([error.code, detail?.reason, detail?.metadata["field"]]).toEqual([
        Code.InvalidArgument,
        ErrorReason.INVALID_ARGUMENT,
        "worker.runtime_id",
      ]);
    });
  });

  it("passes a runtime's refusal of a watch cursor on unchanged, for both watches", async () => {
    const { worker } = await direct.catalog.createWorker({ runtimeId: "rs" });
    for (const afterCursor of ["garbage", "r1", `w${"z".repeat(40)}`]) {
      const cases: [string, (c: Clients) => Promise<unknown>][] = [
        ["WatchWorker", (c) => first(c.observation.watchWorker({ worker: worker?.ref, afterCursor }))],
        ["WatchRuntime", (c) => first(c.observation.watchRuntime({ runtimeId: "rs", afterCursor }))],
      ];
      for (const [what, call] of cases) {
        const want = await expectError(() => call(direct));
        const got = await expectError(() => call(viaBackend));
        expect([got.error.code, got.detail?.reason, got.detail?.metadata], `${what} ${afterCursor}`).toEqual([
          want.error.code,
          want.detail?.reason,
          want.detail?.metadata,
        ]);
      }
    }
  });

  it("refuses to remove or re-point the embedded runtime, and to add a registered id with another url", async () => {
    for (const call of [
      () => viaBackend.registry.removeRuntime({ runtimeId: "emb" }),
      () => viaBackend.registry.updateRuntime({ runtimeId: "emb", url: "http://127.0.0.1:1" }),
    ]) {
      const embedded = await expectReason(call, Code.FailedPrecondition, ErrorReason.UNSUPPORTED);
      expect(embedded.metadata["runtime_id"]).toBe("emb");
    }
    // A specific reason a client can switch on (a generic INVALID_ARGUMENT would read as a malformed id),
    // for a remote id with another url and for the embedded runtime's id alike.
    for (const runtimeId of ["rs", "emb"]) {
      const taken = await expectError(() => viaBackend.registry.addRuntime({ runtimeId, url: "http://127.0.0.1:1" }));
      expect([taken.error.code, taken.detail?.reason, taken.detail?.metadata["field"], taken.detail?.metadata["runtime_id"]]).toEqual([
        Code.AlreadyExists,
        ErrorReason.RUNTIME_ALREADY_REGISTERED,
        "runtime_id",
        runtimeId,
      ]);
      // The way to a remote's new url is named (the embedded runtime has none).
      expect(taken.error.rawMessage.includes("UpdateRuntime")).toBe(runtimeId === "rs");
    }
    expect(backend.directory.get("rs")?.health).toBe(RuntimeHealth.READY);
  });

  it("refuses an overlong ListRuntimes page token instead of reading its first 512 characters", async () => {
    const page = await viaBackend.registry.listRuntimes({ pageSize: 1 });
    expect(page.nextPageToken).not.toBe("");
    // The issued token, padded past 512 characters: its first 512 still decode to the same position.
    const padded = `${page.nextPageToken}=${"A".repeat(600)}`;
    const { error, detail } = await expectError(() => viaBackend.registry.listRuntimes({ pageSize: 1, pageToken: padded }));
    expect([error.code, detail?.reason, detail?.metadata["field"]]).toEqual([
      Code.InvalidArgument,
      ErrorReason.PAGE_TOKEN_INVALID,
      "page_token",
    ]);
    expect(error.rawMessage).not.toContain("AAAA");
    // Within the bound too, a token with characters the Backend never writes is refused, not decoded up to them.
    const labelSelector = { "page-token-test": protocol };
    for (let i = 0; i < 2; i++) await viaBackend.catalog.createWorker({ runtimeId: "emb", labels: labelSelector });
    const listings: [string, (pageToken: string) => Promise<unknown>][] = [
      ["ListRuntimes", (pageToken) => viaBackend.registry.listRuntimes({ pageSize: 1, pageToken })],
      ["ListWorkers", (pageToken) => viaBackend.catalog.listWorkers({ pageSize: 1, pageToken, labelSelector })],
    ];
    const issued = [page.nextPageToken, (await viaBackend.catalog.listWorkers({ pageSize: 1, labelSelector })).nextPageToken];
    for (const [i, [what, list]] of listings.entries()) {
      expect(issued[i], what).not.toBe("");
      const suffixed = await expectError(() => list(`${issued[i]}=AAAA`));
      expect([suffixed.error.code, suffixed.detail?.reason], what).toEqual([Code.InvalidArgument, ErrorReason.PAGE_TOKEN_INVALID]);
    }
  });

  it("refuses an empty runtime id in the registry with INVALID_ARGUMENT, not NOT_FOUND", async () => {
    for (const call of [
      () => viaBackend.registry.getRegisteredRuntime({}),
      () => viaBackend.registry.removeRuntime({}),
      () => viaBackend.registry.updateRuntime({ url: "http://127.0.0.1:1" }),
    ]) {
      const detail = await expectReason(call, Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT);
      expect(detail.metadata["field"]).toBe("runtime_id");
    }
  });

  it("refuses an AddRuntime or UpdateRuntime bearer token that cannot travel in a header, without quoting it", async () => {
    const endpoint = backend.directory.get("rs")?.endpoint;
    for (const bearerToken of ["two\nlines", "with space", "n\u00f6n-ascii", "tab\there"]) {
      for (const call of [
        () => viaBackend.registry.addRuntime({ runtimeId: "rt-token", url: "http://127.0.0.1:1", bearerToken }),
        () => viaBackend.registry.updateRuntime({ runtimeId: "rs", url: "http://127.0.0.1:1", bearerToken }),
      ]) {
        const { error, detail } = await expectError(call);
        expect(error.code).toBe(Code.InvalidArgument);
        expect(detail?.reason).toBe(ErrorReason.INVALID_ARGUMENT);
        expect(detail?.metadata["field"]).toBe("bearer_token");
        expect(error.rawMessage).not.toContain(bearerToken);
      }
    }
    expect(backend.directory.get("rt-token")).toBeUndefined();
    // A refused update changes nothing.
    expect(backend.directory.get("rs")?.endpoint).toBe(endpoint);
    expect(backend.directory.get("rs")?.health).toBe(RuntimeHealth.READY);
  });

  it("answers UpdateRuntime of an unknown runtime with NOT_FOUND, and a url that is not http(s) with INVALID_ARGUMENT", async () => {
    const unknown = await expectError(() => viaBackend.registry.updateRuntime({ runtimeId: "rt-nowhere", url: "http://127.0.0.1:1" }));
    expect([unknown.error.code, unknown.detail?.reason]).toEqual([Code.NotFound, ErrorReason.NOT_FOUND]);
    expect(backend.directory.get("rt-nowhere")).toBeUndefined();
    for (const url of ["ftp://127.0.0.1:1", "not a url", ""]) {
      const bad = await expectReason(
        () => viaBackend.registry.updateRuntime({ runtimeId: "rs", url }),
        Code.InvalidArgument,
        ErrorReason.INVALID_ARGUMENT,
      );
      expect(bad.metadata["field"], url).toBe("url");
    }
    expect(backend.directory.get("rs")?.health).toBe(RuntimeHealth.READY);
  });

  it("bounds AddRuntime's url and secrets with LIMIT_EXCEEDED naming the limit, as a runtime bounds its fields", async () => {
    const cases: [string, () => Promise<unknown>][] = [
      ["url", () => viaBackend.registry.addRuntime({ runtimeId: "rt-big", url: `http://127.0.0.1:1/${"p".repeat(3000)}` })],
      [
        "bearer_token",
        () => viaBackend.registry.addRuntime({ runtimeId: "rt-big", url: "http://127.0.0.1:1", bearerToken: "t".repeat(5000) }),
      ],
      [
        "ca_certificate_pem",
        () => viaBackend.registry.addRuntime({ runtimeId: "rt-big", url: "https://127.0.0.1:1", caCertificatePem: "c".repeat(70_000) }),
      ],
      ["url", () => viaBackend.registry.updateRuntime({ runtimeId: "rs", url: `http://127.0.0.1:1/${"p".repeat(3000)}` })],
      [
        "bearer_token",
        () => viaBackend.registry.updateRuntime({ runtimeId: "rs", url: "http://127.0.0.1:1", bearerToken: "t".repeat(5000) }),
      ],
    ];
    for (const [field, call] of cases) {
      const { error, detail } = await expectError(call);
      expect(error.code, field).toBe(Code.InvalidArgument);
      expect(detail?.reason, field).toBe(ErrorReason.LIMIT_EXCEEDED);
      expect(detail?.metadata["field"], field).toBe(field);
      expect(Number(detail?.metadata["limit"]), field).toBeGreaterThan(0);
      expect(error.rawMessage.length, field).toBeLessThan(200);
    }
    expect(backend.directory.get("rt-big")).toBeUndefined();
  });

  it("keeps an AddRuntime retry with the same url and credentials idempotent, and refuses one with other credentials", async () => {
    const runtimeId = `rt-cred-${protocol}`;
    const url = "http://127.0.0.1:1";
    await viaBackend.registry.addRuntime({ runtimeId, url, bearerToken: "first-secret" });
    try {
      const again = await viaBackend.registry.addRuntime({ runtimeId, url, bearerToken: "first-secret" });
      expect(again.runtime?.runtimeId).toBe(runtimeId);
      for (const bearerToken of ["second-secret", ""]) {
        const { error, detail } = await expectError(() => viaBackend.registry.addRuntime({ runtimeId, url, bearerToken }));
        expect([error.code, detail?.reason, detail?.metadata["field"]]).toEqual([
          Code.AlreadyExists,
          ErrorReason.RUNTIME_ALREADY_REGISTERED,
          "runtime_id",
        ]);
        expect(error.rawMessage).toContain("UpdateRuntime");
        expect(error.rawMessage).not.toContain("secret");
      }
      // The credentials held are still the first ones: the retry with them is still a success.
      await viaBackend.registry.addRuntime({ runtimeId, url, bearerToken: "first-secret" });
    } finally {
      await viaBackend.registry.removeRuntime({ runtimeId });
    }
  });

  it("refuses a ca_certificate_pem that is not CA certificates, or given for an http:// url, naming the field", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "ca-check-"));
    try {
      const { cert, key } = await selfSignedCertificate(dir);
      const cases: [string, () => Promise<unknown>][] = [
        [
          "a private key",
          () => viaBackend.registry.addRuntime({ runtimeId: "rt-ca", url: "https://127.0.0.1:1", caCertificatePem: key.toString() }),
        ],
        [
          "a key and a certificate",
          () => viaBackend.registry.addRuntime({ runtimeId: "rt-ca", url: "https://127.0.0.1:1", caCertificatePem: `${cert}${key}` }),
        ],
        ["not PEM", () => viaBackend.registry.addRuntime({ runtimeId: "rt-ca", url: "https://127.0.0.1:1", caCertificatePem: "hello" })],
        [
          "a CA for http://",
          () => viaBackend.registry.addRuntime({ runtimeId: "rt-ca", url: "http://127.0.0.1:1", caCertificatePem: cert.toString() }),
        ],
        [
          "an update with a private key",
          () => viaBackend.registry.updateRuntime({ runtimeId: "rs", url: "https://127.0.0.1:1", caCertificatePem: key.toString() }),
        ],
        [
          "an update with a CA for http://",
          () => viaBackend.registry.updateRuntime({ runtimeId: "rs", url: remote.baseUrl, caCertificatePem: cert.toString() }),
        ],
      ];
      for (const [what, call] of cases) {
        const detail = await expectReason(call, Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT);
        expect(detail.metadata["field"], what).toBe("ca_certificate_pem");
      }
      expect(backend.directory.get("rt-ca")).toBeUndefined();
      expect(backend.directory.get("rs")?.health).toBe(RuntimeHealth.READY);
      // A certificate for an https:// url is accepted.
      await viaBackend.registry.addRuntime({ runtimeId: "rt-ca", url: "https://127.0.0.1:1", caCertificatePem: cert.toString() });
      await viaBackend.registry.removeRuntime({ runtimeId: "rt-ca" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("AddRuntime past the Backend's runtime bound", () => {
  // Every registered runtime holds a connection, a shared watch and its metrics' label values:
  // a token holder adding runtimes in a loop must meet a bound, not grow the Backend without end.
  it("is RESOURCE_EXHAUSTED with LIMIT_EXCEEDED and the bound, and a removed runtime frees its place", async () => {
    const embedded = await createRuntime({ logger: silentLogger, runtimeId: "emb-bound" });
    const bounded = createBackend({ runtime: embedded, logger: silentLogger, maxRuntimes: 2 });
    const boundedServer = await startRuntimeServer({
      runtime: embedded,
      routes: bounded.routes,
      host: "127.0.0.1",
      port: 0,
      logger: silentLogger,
    });
    const baseUrl = `http://${boundedServer.h2Address}`;
    const session = new Http2SessionManager(baseUrl);
    try {
      const registry = createClient(RuntimeRegistry, makeTransport("grpc", baseUrl, session));
      await registry.addRuntime({ runtimeId: "rt-a", url: "http://127.0.0.1:1" });
      const refused = await expectReason(
        () => registry.addRuntime({ runtimeId: "rt-b", url: "http://127.0.0.1:1" }),
        Code.ResourceExhausted,
        ErrorReason.LIMIT_EXCEEDED,
      );
      expect(refused.metadata["limit"]).toBe("2");
      expect(bounded.directory.get("rt-b")).toBeUndefined();
      await registry.removeRuntime({ runtimeId: "rt-a" });
      await registry.addRuntime({ runtimeId: "rt-b", url: "http://127.0.0.1:1" });
      expect(bounded.directory.get("rt-b")).toBeDefined();
    } finally {
      session.abort();
      bounded.close();
      await boundedServer.close(0);
    }
  });
});
