import { fromBinary, fromJsonString } from "@bufbuild/protobuf";
import { Code, type Interceptor } from "@connectrpc/connect";
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { PutConfigBundleRequestSchema } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import type { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { ROUTED_LIST_CEILING } from "../../src/backend/request-checks.js";
import { BUNDLE_BOUNDS, MAX_CAPABILITY_ENTRIES } from "../../src/runtime/request-bounds.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { bundleOf } from "../support/bundles.js";
import { expectError } from "../support/errors.js";
import { type Clients, PROTOCOLS } from "../support/harness.js";
import { http2Exchange, type RawAnswer } from "../support/http2-exchange.js";
import { grpcFrame } from "../support/raw-http2.js";
import { repeatedEntries, stringField } from "../support/repeated-requests.js";
import { grpcRefusal, longestHealthWait } from "../support/flood-checks.js";

/**
 * The Backend counts the repeated and map fields of the calls it routes
 * (CreateWorker, PutConfigBundle, ListWorkers) by the bounds every Runtime
 * shares before relaying them (a CreateWorker's mounts and labels by a
 * ceiling of its own, as each Runtime's limits for them may be raised): relaying re-encodes the request, which for one
 * that repeats a short entry hundreds of thousands of times held the
 * Backend's event loop for seconds (8.7 s for a 3.3 MB JSON CreateWorker,
 * to be told `workspace: is required`). A real Backend in front of a real
 * remote runtime, each served on 127.0.0.1; the remote records the calls
 * that reach it.
 */
let setup: BackendWithRemote;
/** The routed calls under test that reached the remote (the Backend's own calls to it, its watch and probes, are not). */
const reached: string[] = [];
const ROUTED = new Set(["CreateWorker", "PutConfigBundle", "ListWorkers"]);
const recordCalls: Interceptor = (next) => (request) => {
  if (ROUTED.has(request.method.name)) reached.push(request.method.name);
  return next(request);
};

beforeAll(async () => {
  setup = await startBackendWithRemote({
    embedded: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    remote: await createRuntime({ logger: silentLogger, runtimeId: "rs" }),
    remoteServer: { interceptors: [recordCalls] },
  });
});

afterAll(async () => {
  await setup?.close();
});

/** The refusal in a raw answer: Connect JSON's body, or gRPC's trailers. */
function refusal(answer: RawAnswer, json: boolean): { code: string | number; reason?: ErrorReason; metadata?: Record<string, string> } {
  if (json) {
    const body = JSON.parse(answer.body.toString("utf8")) as { code: string; details?: { type: string; value: string }[] };
    const any = body.details?.find((d) => d.type === "worker_runtime.v1.ErrorDetail");
    const detail = any ? fromBinary(ErrorDetailSchema, Buffer.from(any.value, "base64")) : undefined;
    return { code: body.code, reason: detail?.reason, metadata: detail?.metadata };
  }
  return grpcRefusal(answer.trailers);
}

interface HugeCase {
  what: string;
  path: string;
  json: boolean;
  body: () => Buffer;
  decode: (body: Buffer) => unknown;
  field: string;
  limit: number;
}

const CREATE_WORKER = "/worker_runtime.v1.WorkerCatalog/CreateWorker";
const PUT_BUNDLE = "/worker_runtime.v1.RuntimeManagement/PutConfigBundle";

const HUGE_CASES: HugeCase[] = [
  {
    what: "a 3.3 MB Connect JSON CreateWorker of 300,000 capabilities",
    path: CREATE_WORKER,
    json: true,
    body: () => Buffer.from(JSON.stringify({ runtimeId: "rs", capabilities: new Array<string>(300_000).fill("fs.read") })),
    decode: (body) => fromJsonString(CreateWorkerRequestSchema, body.toString("utf8")),
    field: "capabilities",
    limit: MAX_CAPABILITY_ENTRIES,
  },
  {
    what: "a 4 MB gRPC CreateWorker of 450,000 capabilities",
    path: CREATE_WORKER,
    json: false,
    body: () => grpcFrame(Buffer.concat([stringField(1, "rs"), repeatedEntries(stringField(5, "fs.read"), 4_000_000)])),
    decode: (body) => fromBinary(CreateWorkerRequestSchema, body.subarray(5)),
    field: "capabilities",
    limit: MAX_CAPABILITY_ENTRIES,
  },
  {
    what: "a Connect JSON PutConfigBundle of 300,000 allowed_programs",
    path: PUT_BUNDLE,
    json: true,
    body: () =>
      Buffer.from(
        JSON.stringify({
          runtimeId: "rs",
          bundle: {
            bundleId: "b1",
            profiles: [{ name: "p" }],
            policies: { shell: { allowedPrograms: new Array<string>(300_000).fill("git") } },
          },
        }),
      ),
    decode: (body) => fromJsonString(PutConfigBundleRequestSchema, body.toString("utf8")),
    field: "bundle.policies.shell.allowed_programs",
    limit: BUNDLE_BOUNDS.programs,
  },
];

describe("a huge routed request, huge only by repeating one entry", () => {
  it.each(HUGE_CASES)("$what is refused by the Backend before relaying, costing other clients only its decoding", async (huge) => {
    const body = huge.body();
    const decodeStarted = performance.now();
    huge.decode(body);
    const decodeMs = performance.now() - decodeStarted;
    const clients = setup.clients("grpc");
    await clients.health.check({});
    reached.length = 0;
    const session = http2.connect(`http://${setup.backendServer.h2Address}`);
    try {
      const headers = huge.json
        ? { ":method": "POST", ":path": huge.path, "content-type": "application/json" }
        : { ":method": "POST", ":path": huge.path, "content-type": "application/grpc", te: "trailers" };
      const exchange = http2Exchange(session, headers, body, 120_000);
      const longestWait = await longestHealthWait(clients, exchange);
      const answer = await exchange;
      expect(refusal(answer, huge.json)).toEqual({
        code: huge.json ? "invalid_argument" : Code.InvalidArgument,
        reason: ErrorReason.LIMIT_EXCEEDED,
        metadata: { field: huge.field, limit: String(huge.limit) },
      });
      expect(reached).toEqual([]);
      // Relative to this machine's decoding of the same body, and loose (see test/runtime/request-bounds.test.ts).
      expect(longestWait).toBeLessThan(Math.max(1000, 3 * decodeMs));
    } finally {
      session.close();
    }
  });
});

describe.each(PROTOCOLS)("routed lists over their bounds over %s", (protocol) => {
  it("are refused through the Backend as the Runtime refuses them; by the Backend itself, without reaching it, past the bounds every runtime shares", async () => {
    const via = setup.clients(protocol);
    const direct = setup.remoteClients(protocol);
    const labels = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "v"]));
    const mounts = Array.from({ length: 9 }, (_, i) => ({ root: "ws", path: `m${i}`, name: `m${i}` }));
    // Mounts and labels are each runtime's own limits (an operator may raise them): the runtime refuses them itself.
    const relayed = new Map([
      ["mounts", "CreateWorker"],
      ["labels", "CreateWorker"],
      ["label_selector", "ListWorkers"],
    ]);
    const calls: [string, (c: Clients) => Promise<unknown>][] = [
      [
        "capabilities",
        (c) =>
          c.catalog.createWorker({ runtimeId: "rs", capabilities: Array.from({ length: MAX_CAPABILITY_ENTRIES + 1 }, () => "fs.read") }),
      ],
      ["mounts", (c) => c.catalog.createWorker({ runtimeId: "rs", mounts })],
      ["labels", (c) => c.catalog.createWorker({ runtimeId: "rs", labels })],
      ["statuses", (c) => c.catalog.listWorkers({ runtimeId: "rs", statuses: [1, 2, 3, 4, 1, 2] as WorkerStatus[] })],
      ["label_selector", (c) => c.catalog.listWorkers({ runtimeId: "rs", labelSelector: labels })],
      [
        "bundle.profiles[0].tools",
        (c) =>
          c.management.putConfigBundle({
            runtimeId: "rs",
            bundle: bundleOf({
              bundleId: "b2",
              profiles: [{ name: "p", tools: Array.from({ length: BUNDLE_BOUNDS.profileList + 1 }, (_, i) => `t${i}`) }],
            }),
          }),
      ],
    ];
    for (const [field, call] of calls) {
      const want = await expectError(() => call(direct));
      reached.length = 0;
      const got = await expectError(() => call(via));
      expect([got.error.code, got.detail?.reason, got.detail?.metadata], field).toEqual([
        want.error.code,
        want.detail?.reason,
        want.detail?.metadata,
      ]);
      expect(got.detail?.metadata["field"], field).toBe(field);
      const method = relayed.get(field);
      expect(reached, field).toEqual(method ? [method] : []);
    }
    // Past the ceiling that protects the Backend, mounts and labels are refused by it, naming that ceiling.
    const ceiling = ROUTED_LIST_CEILING + 1;
    const overCeiling: [string, (c: Clients) => Promise<unknown>][] = [
      [
        "mounts",
        (c) =>
          c.catalog.createWorker({
            runtimeId: "rs",
            mounts: Array.from({ length: ceiling }, (_, i) => ({ root: "ws", path: `m${i}`, name: `m${i}` })),
          }),
      ],
      [
        "labels",
        (c) =>
          c.catalog.createWorker({
            runtimeId: "rs",
            labels: Object.fromEntries(Array.from({ length: ceiling }, (_, i) => [`k${i}`, "v"])),
          }),
      ],
      [
        "label_selector",
        (c) =>
          c.catalog.listWorkers({
            runtimeId: "rs",
            labelSelector: Object.fromEntries(Array.from({ length: ceiling }, (_, i) => [`k${i}`, "v"])),
          }),
      ],
    ];
    for (const [field, call] of overCeiling) {
      reached.length = 0;
      const got = await expectError(() => call(via));
      expect([got.error.code, got.detail?.reason, got.detail?.metadata], field).toEqual([
        Code.InvalidArgument,
        ErrorReason.LIMIT_EXCEEDED,
        { field, limit: String(ROUTED_LIST_CEILING) },
      ]);
      expect(reached, field).toEqual([]);
    }
  });
});
