import { fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { PutConfigBundleRequestSchema } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { CreateWorkerRequestSchema, ListWorkersRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import type { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { BUNDLE_BOUNDS, MAX_CAPABILITY_ENTRIES } from "../../src/runtime/request-bounds.js";
import { bundleOf } from "../support/bundles.js";
import { expectError } from "../support/errors.js";
import { type Clients, type Harness, PROTOCOLS, startHarness } from "../support/harness.js";
import { rawGrpcCall } from "../support/raw-grpc.js";
import { grpcFrame } from "../support/raw-http2.js";
import { ScriptedBackend } from "../support/scripted-backend.js";
import { bytesField, repeatedEntries, stringField } from "../support/repeated-requests.js";
import { grpcRefusal, longestHealthWait } from "../support/flood-checks.js";

/**
 * Every repeated and map field of a request is bounded by its count before
 * anything works per entry (checks, the request_id fingerprint, a bundle's
 * digest): a request that is large only because it repeats one short entry
 * costs its decoding and nothing more, so it never holds other clients up.
 * A real server on 127.0.0.1; the huge requests are written by hand (their
 * toBinary would cost the test seconds) and sent as raw gRPC, the rest by
 * the generated clients in both protocols.
 */

let harness: Harness;
let workspaceDir: string;
let runtimeId: string;

beforeAll(async () => {
  workspaceDir = await mkdtemp(path.join(tmpdir(), "request-bounds-"));
  harness = await startHarness({ executionBackend: new ScriptedBackend(), workspaceRoots: { ws: workspaceDir } });
  runtimeId = harness.runtime.runtimeId;
});

afterAll(async () => {
  await harness?.close();
  await rm(workspaceDir, { recursive: true, force: true });
});

/** Just under the server's 4 MiB read limit. */
const HUGE_BYTES = 4_000_000;

/** A huge request of one repeated entry, where it goes, and the field and bound its refusal names. */
interface HugeCase {
  what: string;
  path: string;
  body: () => Buffer;
  decode: (bytes: Buffer) => unknown;
  field: string;
  limit: number;
}

const HUGE_CASES: HugeCase[] = [
  {
    what: "CreateWorker with 450,000 capabilities",
    path: "/worker_runtime.v1.WorkerCatalog/CreateWorker",
    // runtime_id = 1, capabilities = 5.
    body: () => Buffer.concat([stringField(1, runtimeId), repeatedEntries(stringField(5, "fs.read"), HUGE_BYTES)]),
    decode: (bytes) => fromBinary(CreateWorkerRequestSchema, bytes),
    field: "capabilities",
    limit: MAX_CAPABILITY_ENTRIES,
  },
  {
    what: "CreateWorker with 200,000 mounts",
    path: "/worker_runtime.v1.WorkerCatalog/CreateWorker",
    // mounts = 10, each MountSpec { root = 1, name = 3 }.
    body: () =>
      Buffer.concat([
        stringField(1, runtimeId),
        repeatedEntries(bytesField(10, Buffer.concat([stringField(1, "ws"), stringField(3, "m")])), HUGE_BYTES),
      ]),
    decode: (bytes) => fromBinary(CreateWorkerRequestSchema, bytes),
    field: "mounts",
    limit: 8,
  },
  {
    what: "ListWorkers with 300,000 label_selector entries",
    path: "/worker_runtime.v1.WorkerCatalog/ListWorkers",
    // label_selector = 5, each entry { key = 1, value = 2 }; keys differ, or they would collapse into one.
    body: () => {
      const entries: Buffer[] = [stringField(1, runtimeId)];
      for (let i = 0, size = 0; size < HUGE_BYTES; i++) {
        const entry = bytesField(5, Buffer.concat([stringField(1, `k${i}`), stringField(2, "v")]));
        entries.push(entry);
        size += entry.length;
      }
      return Buffer.concat(entries);
    },
    decode: (bytes) => fromBinary(ListWorkersRequestSchema, bytes),
    field: "label_selector",
    limit: 32,
  },
  {
    what: "PutConfigBundle with one profile of 450,000 tools",
    path: "/worker_runtime.v1.RuntimeManagement/PutConfigBundle",
    // bundle = 1 { bundle_id = 1, profiles = 3 { name = 1, tools = 7 } }.
    body: () => {
      const profile = Buffer.concat([stringField(1, "p"), repeatedEntries(stringField(7, "read_file"), HUGE_BYTES)]);
      return bytesField(1, Buffer.concat([stringField(1, "b1"), bytesField(3, profile)]));
    },
    decode: (bytes) => fromBinary(PutConfigBundleRequestSchema, bytes),
    field: "bundle.profiles[0].tools",
    limit: BUNDLE_BOUNDS.profileList,
  },
  {
    what: "PutConfigBundle with 450,000 allowed_programs",
    path: "/worker_runtime.v1.RuntimeManagement/PutConfigBundle",
    // bundle = 1 { bundle_id = 1, profiles = 3 { name = 1 }, policies = 4 { shell = 3 { allowed_programs = 1 } } }.
    body: () => {
      const shell = repeatedEntries(stringField(1, "git"), HUGE_BYTES);
      const policies = bytesField(3, shell);
      return bytesField(1, Buffer.concat([stringField(1, "b2"), bytesField(3, stringField(1, "p")), bytesField(4, policies)]));
    },
    decode: (bytes) => fromBinary(PutConfigBundleRequestSchema, bytes),
    field: "bundle.policies.shell.allowed_programs",
    limit: BUNDLE_BOUNDS.programs,
  },
];

describe("a request that is huge only by repeating one entry", () => {
  it.each(HUGE_CASES)("$what is refused by its count, and costs other clients no more than its decoding", async (huge) => {
    const body = huge.body();
    expect(body.length).toBeGreaterThan(HUGE_BYTES);
    expect(body.length).toBeLessThan(4 * 1024 * 1024);
    // What the server cannot avoid: decoding the request (bounded by its read limit) before refusing it.
    const decodeStarted = performance.now();
    huge.decode(body);
    const decodeMs = performance.now() - decodeStarted;
    const clients = harness.connect("grpc");
    await clients.health.check({});
    const call = rawGrpcCall(harness.baseUrl, huge.path, grpcFrame(body));
    const longestWait = await longestHealthWait(clients, call);
    const answer = await call;
    expect(grpcRefusal(answer.trailers)).toEqual({
      code: Code.InvalidArgument,
      reason: ErrorReason.LIMIT_EXCEEDED,
      metadata: { field: huge.field, limit: String(huge.limit) },
    });
    // Relative to the decoding measured on this (shared, loaded) machine, and loose: before the
    // bound, CreateWorker also encoded the whole request for its fingerprint (about 6x its
    // decoding; 4.4 s in the audit), and PutConfigBundle walked and encoded the whole bundle.
    expect(longestWait).toBeLessThan(Math.max(1000, 3 * decodeMs));
  });
});

describe.each(PROTOCOLS)("each repeated and map field's count over %s", (protocol) => {
  let clients: Clients;

  beforeAll(() => {
    clients = harness.connect(protocol);
  });

  /** Expects INVALID_ARGUMENT + LIMIT_EXCEEDED naming `field` and `limit`. */
  async function expectBound(call: () => Promise<unknown>, field: string, limit: number): Promise<void> {
    const { error, detail } = await expectError(call);
    expect([error.code, detail?.reason, detail?.metadata], field).toEqual([
      Code.InvalidArgument,
      ErrorReason.LIMIT_EXCEEDED,
      { field, limit: String(limit) },
    ]);
  }

  const many = (count: number, entry: (i: number) => string): string[] => Array.from({ length: count }, (_, i) => entry(i));

  it("CreateWorker: capabilities, mounts and labels", async () => {
    const workspace = { root: "ws", path: "a" };
    await expectBound(
      () => clients.catalog.createWorker({ runtimeId, workspace, capabilities: many(MAX_CAPABILITY_ENTRIES + 1, () => "fs.read") }),
      "capabilities",
      MAX_CAPABILITY_ENTRIES,
    );
    const mounts = many(9, (i) => `m${i}`).map((name) => ({ root: "ws", path: name, name }));
    await expectBound(() => clients.catalog.createWorker({ runtimeId, workspace, mounts }), "mounts", 8);
    const labels = Object.fromEntries(many(33, (i) => `k${i}`).map((key) => [key, "v"]));
    await expectBound(() => clients.catalog.createWorker({ runtimeId, labels }), "labels", 32);
    // At the bounds: accepted, repeated capabilities read as a set (as before the bound).
    const created = await clients.catalog.createWorker({
      runtimeId,
      workspace: { root: "ws", path: `${protocol}-at-bounds` },
      capabilities: [...many(MAX_CAPABILITY_ENTRIES - 3, () => "fs.read"), "fs.read", "fs.write", "shell.exec"],
      mounts: many(8, (i) => `m${i}`).map((name) => ({ root: "ws", path: `${protocol}-mounts/${name}`, name })),
      labels: Object.fromEntries(many(32, (i) => `k${i}`).map((key) => [key, "v"])),
    });
    expect(created.worker?.capabilities).toEqual(["fs.read", "fs.write", "shell.exec"]);
  });

  it("ListWorkers: statuses and label_selector", async () => {
    await expectBound(() => clients.catalog.listWorkers({ runtimeId, statuses: [1, 2, 3, 4, 1, 2] as WorkerStatus[] }), "statuses", 5);
    const labelSelector = Object.fromEntries(many(33, (i) => `k${i}`).map((key) => [key, "v"]));
    await expectBound(() => clients.catalog.listWorkers({ runtimeId, labelSelector }), "label_selector", 32);
  });

  it("PutConfigBundle: profiles and every list of a profile and of the policies", async () => {
    const profile = (name: string) => ({ name, model: "m" });
    const put = (bundle: ReturnType<typeof bundleOf>) => () => clients.management.putConfigBundle({ bundle });
    const B = BUNDLE_BOUNDS;
    const id = `${protocol}-over`;
    const cases: [string, number, ReturnType<typeof bundleOf>][] = [
      ["bundle.profiles", B.profiles, bundleOf({ bundleId: id, profiles: many(B.profiles + 1, (i) => `p${i}`).map(profile) })],
      [
        "bundle.profiles[0].tools",
        B.profileList,
        bundleOf({ bundleId: id, profiles: [{ ...profile("p"), tools: many(B.profileList + 1, (i) => `t${i}`) }] }),
      ],
      [
        "bundle.profiles[1].approval_required_tools",
        B.profileList,
        bundleOf({
          bundleId: id,
          profiles: [profile("a"), { ...profile("p"), tools: ["t"], approvalRequiredTools: many(B.profileList + 1, () => "t") }],
        }),
      ],
      [
        "bundle.profiles[0].secret_names",
        B.profileList,
        bundleOf({ bundleId: id, profiles: [{ ...profile("p"), secretNames: many(B.profileList + 1, (i) => `S${i}`) }] }),
      ],
      [
        "bundle.policies.allowed_capabilities",
        MAX_CAPABILITY_ENTRIES,
        bundleOf({
          bundleId: id,
          profiles: [profile("p")],
          policies: { allowedCapabilities: many(MAX_CAPABILITY_ENTRIES + 1, () => "fs.read") },
        }),
      ],
      [
        "bundle.policies.allowed_workspace_roots",
        B.roots,
        bundleOf({ bundleId: id, profiles: [profile("p")], policies: { allowedWorkspaceRoots: many(B.roots + 1, (i) => `r${i}`) } }),
      ],
      [
        "bundle.policies.allowed_mount_roots",
        B.roots,
        bundleOf({ bundleId: id, profiles: [profile("p")], policies: { allowedMountRoots: many(B.roots + 1, (i) => `r${i}`) } }),
      ],
      [
        "bundle.policies.shell.allowed_programs",
        B.programs,
        bundleOf({
          bundleId: id,
          profiles: [profile("p")],
          policies: { shell: { allowedPrograms: many(B.programs + 1, (i) => `p${i}`) } },
        }),
      ],
    ];
    for (const [field, limit, bundle] of cases) await expectBound(put(bundle), field, limit);
    // Every list at its bound: accepted (the profiles at theirs, one of them with its lists at theirs, so the
    // bundle stays within its size limit).
    const full = many(B.profileList, (i) => `t${i}`);
    const atBounds = bundleOf({
      bundleId: `${protocol}-at-bounds`,
      profiles: [
        { ...profile("full"), tools: full, approvalRequiredTools: full, secretNames: many(B.profileList, (i) => `S${i}`) },
        ...many(B.profiles - 1, (i) => `p${i}`).map(profile),
      ],
      policies: {
        allowedCapabilities: [...many(MAX_CAPABILITY_ENTRIES - 3, () => "fs.read"), "fs.read", "fs.write", "shell.exec"],
        allowedWorkspaceRoots: many(B.roots, (i) => `r${i}`),
        allowedMountRoots: many(B.roots, (i) => `r${i}`),
        shell: { allowedPrograms: many(B.programs, (i) => `p${i}`) },
      },
    });
    const stored = await clients.management.putConfigBundle({ bundle: atBounds });
    expect(stored.bundle?.profiles).toHaveLength(B.profiles);
  });
});
