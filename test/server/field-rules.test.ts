import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BusyPolicy, WorkerRefSchema, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { ConfigBundleSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { type Input, InputSchema, WorkerStatus, WorkerStatusSchema } from "../../gen/worker_runtime/v1/worker_pb.js";
import { ApprovalDecision, StreamInputRequestSchema } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { bundleDigest, DEFAULT_LIMITS, RuntimeError } from "../../src/runtime/index.js";
import { expectError } from "../support/errors.js";
import { eventually, PROTOCOLS, startHarness, type Clients, type Harness } from "../support/harness.js";
import { awaitApproval, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * The rule of every request field that docs/request-validation.md lists
 * and no other test shows with its bad case, over a real server in both
 * protocols: each bad value is refused with the documented code, reason
 * and "field" (and "limit" for a size bound), its message never quotes a
 * huge input, and the value just inside the bound is accepted.
 */

const L = DEFAULT_LIMITS;
let harness: Harness;
let workspaceDir: string;
let runtimeId: string;
const scripted = new ScriptedBackend();

beforeAll(async () => {
  workspaceDir = await mkdtemp(path.join(tmpdir(), "field-rules-"));
  harness = await startHarness({ executionBackend: scripted, workspaceRoots: { ws: workspaceDir } });
  runtimeId = harness.runtime.runtimeId;
});

afterAll(async () => {
  await harness?.close();
  await rm(workspaceDir, { recursive: true, force: true });
});

/** One bad request: what it calls, and the error it must get. */
interface BadCase {
  what: string;
  call: () => Promise<unknown>;
  code: Code;
  reason: ErrorReason;
  field: string;
  limit?: number;
}

async function expectRefused(bad: BadCase): Promise<void> {
  const { error, detail } = await expectError(bad.call).catch((failure: unknown) => {
    throw new Error(`${bad.what}: ${String(failure)}`);
  });
  expect([error.code, detail?.reason, detail?.metadata["field"]], bad.what).toEqual([bad.code, bad.reason, bad.field]);
  if (bad.limit !== undefined) expect(detail?.metadata["limit"], bad.what).toBe(String(bad.limit));
  expect(error.rawMessage.length, `${bad.what}: message length`).toBeLessThan(400);
}

const invalid = (what: string, field: string, call: () => Promise<unknown>): BadCase => ({
  what,
  call,
  code: Code.InvalidArgument,
  reason: ErrorReason.INVALID_ARGUMENT,
  field,
});
const tooLarge = (what: string, field: string, limit: number, call: () => Promise<unknown>): BadCase => ({
  what,
  call,
  code: Code.InvalidArgument,
  reason: ErrorReason.LIMIT_EXCEEDED,
  field,
  limit,
});

describe.each(PROTOCOLS)("request field rules over %s", (protocol) => {
  let clients: Clients;
  let worker: WorkerRef;

  beforeAll(async () => {
    clients = harness.connect(protocol);
    const created = await clients.catalog.createWorker({ runtimeId });
    worker = created.worker?.ref ?? create(WorkerRefSchema);
  });

  it("CreateWorker: display_name, intent, labels, request_id, capabilities, workspace and profile", async () => {
    const cw = (init: Record<string, unknown>) => () => clients.catalog.createWorker({ runtimeId, ...init });
    const cases: BadCase[] = [
      tooLarge("display_name over its bound", "display_name", L.maxDisplayNameBytes, cw({ displayName: "é".repeat(101) })),
      tooLarge("intent over its bound", "intent", L.maxIntentBytes, cw({ intent: "i".repeat(L.maxIntentBytes + 1) })),
      tooLarge(
        "too many labels",
        "labels",
        L.maxLabels,
        cw({ labels: Object.fromEntries(Array.from({ length: L.maxLabels + 1 }, (_, i) => [`k${i}`, "v"])) }),
      ),
      invalid("a label key with upper case", 'labels["Team"]', cw({ labels: { Team: "a" } })),
      invalid("a label key of 64 characters", `labels["${"k".repeat(64)}"]`, cw({ labels: { ["k".repeat(64)]: "a" } })),
      tooLarge("a label value over its bound", "labels[team]", L.maxLabelValueBytes, cw({ labels: { team: "v".repeat(257) } })),
      invalid("a request_id with a space", "request_id", cw({ requestId: "a b" })),
      invalid("a request_id of 129 characters", "request_id", cw({ requestId: "r".repeat(129) })),
      invalid("a non-ASCII request_id", "request_id", cw({ requestId: "réq" })),
      invalid("an unknown capability", "capabilities[0]", cw({ capabilities: ["fs.everything"] })),
      invalid("a capability without a workspace", "workspace", cw({ capabilities: ["fs.read"] })),
      invalid("a mount without a workspace", "mounts", cw({ mounts: [{ root: "ws", path: "x", name: "x" }] })),
      {
        what: "an unknown workspace root",
        call: cw({ workspace: { root: "nope", path: "" } }),
        code: Code.FailedPrecondition,
        reason: ErrorReason.WORKSPACE_DENIED,
        field: "workspace.root",
      },
      ...["..", "a/../b", "/etc", "a//b", "a\\b", "./a", "a\u0000b"].map(
        (bad): BadCase => ({
          what: `workspace path ${JSON.stringify(bad)}`,
          call: cw({ workspace: { root: "ws", path: bad } }),
          code: Code.InvalidArgument,
          reason: ErrorReason.WORKSPACE_DENIED,
          field: "workspace.path",
        }),
      ),
      tooLarge(
        "a workspace path over its bound",
        "workspace.path",
        L.maxWorkspacePathBytes,
        cw({ workspace: { root: "ws", path: "p".repeat(L.maxWorkspacePathBytes + 1) } }),
      ),
      invalid(
        "a malformed bundle id",
        "profile.bundle.bundle_id",
        cw({ profile: { source: { case: "bundle", value: { bundleId: "a/b" } } } }),
      ),
      ...["md5:abc", `sha256:${"A".repeat(64)}`, `sha256:${"0".repeat(63)}\n`, `sha256:${"0".repeat(10_000)}`].map((digest) =>
        invalid(
          `a bundle digest ${JSON.stringify(digest.slice(0, 12))}`,
          "profile.bundle.digest",
          cw({ profile: { source: { case: "bundle", value: { bundleId: "b1", digest, profile: "p" } } } }),
        ),
      ),
      invalid(
        "a bundle reference without a digest",
        "profile.bundle.digest",
        cw({ profile: { source: { case: "bundle", value: { bundleId: "b1", profile: "p" } } } }),
      ),
    ];
    for (const bad of cases) await expectRefused(bad);
    const unknownProfile = await expectError(cw({ profile: { source: { case: "builtin", value: "x".repeat(10_000) } } }));
    expect([unknownProfile.error.code, unknownProfile.detail?.reason]).toEqual([Code.NotFound, ErrorReason.PROFILE_NOT_FOUND]);
    expect(unknownProfile.error.rawMessage.length).toBeLessThan(200);
    // Just inside every bound is accepted.
    const ok = await clients.catalog.createWorker({
      runtimeId,
      displayName: "é".repeat(100),
      intent: "i".repeat(L.maxIntentBytes),
      labels: { ["k".repeat(63)]: "v".repeat(L.maxLabelValueBytes), "a.b-c_d": "" },
      requestId: "r".repeat(128),
      capabilities: ["fs.read"],
      workspace: { root: "ws", path: "p".repeat(L.maxWorkspacePathBytes) },
    });
    expect(ok.worker?.ref?.workerId).toMatch(/^w-/);
  });

  it("ListWorkers: a statuses filter longer than the statuses that exist", async () => {
    const max = WorkerStatusSchema.values.length;
    for (const length of [max + 1, 1_000_000]) {
      await expectRefused(
        tooLarge(`${length} statuses`, "statuses", max, () =>
          clients.catalog.listWorkers({ runtimeId, statuses: new Array<WorkerStatus>(length).fill(WorkerStatus.FAILED) }),
        ),
      );
    }
    const all = WorkerStatusSchema.values.map((value) => value.number as WorkerStatus);
    expect((await clients.catalog.listWorkers({ runtimeId, statuses: all })).workers.length).toBeGreaterThan(0);
  });

  it("SendInput and StreamInput: request_id", async () => {
    for (const requestId of ["a b", "r".repeat(129), "réq", "tab\there"]) {
      await expectRefused(
        invalid(`request_id ${JSON.stringify(requestId.slice(0, 10))}`, "request_id", () =>
          clients.interaction.sendInput({ worker, input: { text: "hi" }, requestId }),
        ),
      );
    }
  });

  it("ResolveApproval: tool_call_id, reason and request_id", async () => {
    scripted.enqueue(awaitApproval());
    const { worker: approving } = await clients.catalog.createWorker({ runtimeId });
    const ref = approving?.ref ?? create(WorkerRefSchema);
    const runId = (await clients.interaction.sendInput({ worker: ref, input: { text: "write" } })).run?.runId ?? "";
    await eventually(async () => (await clients.interaction.getRun({ worker: ref, runId })).run?.pendingApproval !== undefined);
    const resolve =
      (toolCallId: string, reason = "") =>
      () =>
        clients.interaction.resolveApproval({ worker: ref, runId, toolCallId, decision: ApprovalDecision.REJECT, reason });
    await expectRefused(invalid("an empty tool_call_id", "tool_call_id", resolve("")));
    await expectRefused(invalid("a tool_call_id over its bound", "tool_call_id", resolve("c".repeat(L.maxToolCallIdLength + 1))));
    // Refused as malformed, not looked up: the APPROVAL_NOT_PENDING message would quote them.
    for (const bad of ["c\u0007", "c\n1", "\u001b[31mc1", "c\u007f", "c\u0085", "c\u0000"]) {
      await expectRefused(invalid(`a tool_call_id with a control character (${JSON.stringify(bad)})`, "tool_call_id", resolve(bad)));
    }
    await expectRefused(
      tooLarge("a reason over its bound", "reason", L.maxApprovalReasonBytes, resolve("c1", "r".repeat(L.maxApprovalReasonBytes + 1))),
    );
    for (const requestId of ["a b", "r".repeat(129), "réq", "tab\there"]) {
      await expectRefused(
        invalid(`request_id ${JSON.stringify(requestId.slice(0, 10))}`, "request_id", () =>
          clients.interaction.resolveApproval({ worker: ref, runId, toolCallId: "c1", decision: ApprovalDecision.REJECT, requestId }),
        ),
      );
    }
    const decided = await clients.interaction.resolveApproval({
      worker: ref,
      runId,
      toolCallId: "c1",
      decision: ApprovalDecision.REJECT,
      reason: "r".repeat(L.maxApprovalReasonBytes),
    });
    expect(decided.run?.runId).toBe(runId);
  });

  it("RuntimeManagement: worker_id filter, bundle ids, foreign runtime ids", async () => {
    const cases: BadCase[] = [
      invalid("a malformed worker_id filter", "worker_id", () => clients.management.listDiagnostics({ workerId: "../x" })),
      invalid("a malformed bundle_id", "bundle_id", () => clients.management.getConfigBundle({ bundleId: "a b" })),
      invalid("an empty bundle_id", "bundle_id", () => clients.management.getConfigBundle({})),
      invalid("a malformed runtime_id", "runtime_id", () => clients.management.listAllocations({ runtimeId: "a/b" })),
      {
        what: "a foreign runtime_id",
        call: () => clients.management.listConfigBundles({ runtimeId: "rt-other" }),
        code: Code.InvalidArgument,
        reason: ErrorReason.RUNTIME_MISMATCH,
        field: "runtime_id",
      },
      {
        what: "a ListConfigBundles page token it did not issue",
        call: () => clients.management.listConfigBundles({ pageToken: "bm90LWEtdG9rZW4" }),
        code: Code.InvalidArgument,
        reason: ErrorReason.PAGE_TOKEN_INVALID,
        field: "page_token",
      },
      {
        what: "a negative ListConfigBundles page size",
        call: () => clients.management.listConfigBundles({ pageSize: -1 }),
        code: Code.InvalidArgument,
        reason: ErrorReason.INVALID_ARGUMENT,
        field: "page_size",
      },
    ];
    for (const bad of cases) await expectRefused(bad);
  });

  it("PutConfigBundle: a profile temperature that no provider can take", async () => {
    const bundle = (temperature: number) => {
      const value = create(ConfigBundleSchema, { bundleId: `b-${protocol}`, profiles: [{ name: "p", temperature }] });
      value.digest = bundleDigest(value);
      return value;
    };
    for (const temperature of [Number.NaN, Number.POSITIVE_INFINITY, -0.5]) {
      await expectRefused(
        invalid(`temperature ${temperature}`, "bundle.profiles[0].temperature", () =>
          clients.management.putConfigBundle({ bundle: bundle(temperature) }),
        ),
      );
    }
    expect((await clients.management.putConfigBundle({ bundle: bundle(0) })).bundle?.profiles[0]?.temperature).toBe(0);
  });

  it("PutConfigBundle: the bundle's shape, names and size", async () => {
    const put = (init: Record<string, unknown>, digest?: string) => () => {
      const bundle = create(ConfigBundleSchema, { bundleId: `shape-${protocol}`, profiles: [{ name: "p" }], ...init });
      bundle.digest = digest ?? bundleDigest(bundle);
      return clients.management.putConfigBundle({ bundle });
    };
    const cases: BadCase[] = [
      invalid("no bundle", "bundle", () => clients.management.putConfigBundle({})),
      invalid("a malformed bundle_id", "bundle.bundle_id", put({ bundleId: "a b" })),
      invalid("no profiles", "bundle.profiles", put({ profiles: [] })),
      invalid("a malformed profile name", "bundle.profiles[0].name", put({ profiles: [{ name: "p q" }] })),
      invalid("a profile name twice", "bundle.profiles[1].name", put({ profiles: [{ name: "p" }, { name: "p" }] })),
      invalid("a malformed secret name", "bundle.profiles[0].secret_names[0]", put({ profiles: [{ name: "p", secretNames: ["1X"] }] })),
      invalid(
        "a provider key secret not listed",
        "bundle.profiles[0].provider_api_key_secret",
        put({ profiles: [{ name: "p", providerApiKeySecret: "KEY" }] }),
      ),
      invalid(
        "an unknown allowed capability",
        "bundle.policies.allowed_capabilities[0]",
        put({ policies: { allowedCapabilities: ["fs.all"] } }),
      ),
      invalid("an empty allowed root", "bundle.policies.allowed_workspace_roots[0]", put({ policies: { allowedWorkspaceRoots: [""] } })),
      invalid(
        "a program given as a path",
        "bundle.policies.shell.allowed_programs[0]",
        put({ policies: { shell: { allowedPrograms: ["/bin/sh"] } } }),
      ),
      tooLarge("a bundle over 256 KiB", "bundle", 256 * 1024, put({ profiles: [{ name: "p", systemPrompt: "s".repeat(256 * 1024) }] })),
      {
        what: "a digest that does not match",
        call: put({}, `sha256:${"0".repeat(64)}`),
        code: Code.InvalidArgument,
        reason: ErrorReason.BUNDLE_CONFLICT,
        field: "bundle.digest",
      },
    ];
    for (const bad of cases) await expectRefused(bad);
  });

  it("WatchWorker: a cursor ahead of the stream", async () => {
    const cursor = await workerStreamCursor(clients, worker);
    const [head = "", seq = "0"] = cursor.split(".");
    const ahead = `${head}.${(Number.parseInt(seq, 36) + 1000).toString(36)}`;
    await expectRefused(
      invalid("a cursor ahead", "after_cursor", async () => {
        for await (const message of clients.observation.watchWorker({ worker, afterCursor: ahead })) return message;
        return undefined;
      }),
    );
  });

  it("WatchRuntime: a malformed or foreign cursor", async () => {
    const first = async (afterCursor: string) => {
      for await (const message of clients.observation.watchRuntime({ runtimeId, afterCursor })) return message;
      return undefined;
    };
    await expectRefused(invalid("a cursor that is not one", "after_cursor", () => first("garbage")));
    const workerCursor = await workerStreamCursor(clients, worker);
    expect(workerCursor).not.toBe("");
    await expectRefused({
      what: "a worker stream's cursor",
      call: () => first(workerCursor),
      code: Code.InvalidArgument,
      reason: ErrorReason.CURSOR_FOREIGN,
      field: "after_cursor",
    });
  });
});

/** A cursor of `worker`'s own stream (from its snapshot). */
async function workerStreamCursor(clients: Clients, worker: WorkerRef): Promise<string> {
  for await (const message of clients.observation.watchWorker({ worker })) return message.snapshot?.cursor ?? "";
  return "";
}

describe("watch streams per worker (and WatchRuntime streams) over their bound", () => {
  let small: Harness;

  beforeAll(async () => {
    small = await startHarness({ limits: { maxWatchersPerWorker: 2, maxWorkers: 4 } });
  });

  afterAll(async () => {
    await small?.close();
  });

  it.each(PROTOCOLS)(
    "are RESOURCE_EXHAUSTED with LIMIT_EXCEEDED naming the bound over %s, and a slot freed is taken again",
    async (protocol) => {
      const clients = small.connect(protocol);
      const id = small.runtime.runtimeId;
      const worker = (await clients.catalog.createWorker({ runtimeId: id })).worker?.ref;
      const opens: [string, (signal: AbortSignal) => AsyncIterable<unknown>][] = [
        ["WatchWorker", (signal) => clients.observation.watchWorker({ worker }, { signal })],
        ["WatchRuntime", (signal) => clients.observation.watchRuntime({ runtimeId: id }, { signal })],
      ];
      for (const [what, open] of opens) {
        const held = [new AbortController(), new AbortController()];
        for (const controller of held) {
          const iterator = open(controller.signal)[Symbol.asyncIterator]();
          await iterator.next();
        }
        const third = open(new AbortController().signal)[Symbol.asyncIterator]();
        const { error, detail } = await expectError(() => third.next());
        expect([error.code, detail?.reason, detail?.metadata["limit"]], what).toEqual([
          Code.ResourceExhausted,
          ErrorReason.LIMIT_EXCEEDED,
          "2",
        ]);
        held[0]?.abort();
        await eventually(() => small.runtime.stats().subscriptions < 2, 5_000, "a slot freed");
        const againController = new AbortController();
        const again = open(againController.signal)[Symbol.asyncIterator]();
        expect((await again.next()).done, what).toBe(false);
        againController.abort();
        held[1]?.abort();
        await eventually(() => small.runtime.stats().subscriptions === 0, 5_000, "every watch released");
      }
    },
  );

  it("leave StreamInput's bad input INVALID_ARGUMENT when every watch slot is taken, over both protocols and embedded", async () => {
    const id = small.runtime.runtimeId;
    const worker = (await small.connect("grpc").catalog.createWorker({ runtimeId: id })).worker?.ref;
    const held = [new AbortController(), new AbortController()];
    for (const controller of held) {
      await small.connect("grpc").observation.watchWorker({ worker }, { signal: controller.signal })[Symbol.asyncIterator]().next();
    }
    const bad: [string, string, { input?: Input; busyPolicy?: BusyPolicy; requestId?: string }][] = [
      ["no input", "input", {}],
      ["empty text", "input.text", { input: create(InputSchema, { text: "" }) }],
      ["an unknown busy policy", "busy_policy", { input: create(InputSchema, { text: "hi" }), busyPolicy: 99 as BusyPolicy }],
      ["a bad request id", "request_id", { input: create(InputSchema, { text: "hi" }), requestId: "has space" }],
    ];
    for (const [what, field, fields] of bad) {
      const request = create(StreamInputRequestSchema, { worker, ...fields });
      for (const protocol of PROTOCOLS) {
        const { error, detail } = await expectError(() =>
          small.connect(protocol).interaction.streamInput(request)[Symbol.asyncIterator]().next(),
        );
        expect([error.code, detail?.reason, detail?.metadata["field"]], `${what} over ${protocol}`).toEqual([
          Code.InvalidArgument,
          ErrorReason.INVALID_ARGUMENT,
          field,
        ]);
      }
      const embedded = await small.runtime
        .streamInput(request, { signal: new AbortController().signal })
        .next()
        .catch((e: unknown) => e);
      expect(embedded, `${what} embedded`).toBeInstanceOf(RuntimeError);
      const { code, reason, metadata } = embedded as RuntimeError;
      expect([code, reason, metadata["field"]], `${what} embedded`).toEqual([Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT, field]);
    }
    // A good input is not refused for the watchers' slots (StreamInput has a pool of its own,
    // test/server/input-stream-slots.test.ts): it reaches the worker, which has no execution backend here.
    const full = await expectError(() =>
      small
        .connect("connect")
        .interaction.streamInput({ worker, input: { text: "hi" } })
        [Symbol.asyncIterator]()
        .next(),
    );
    expect([full.error.code, full.detail?.reason]).toEqual([Code.FailedPrecondition, ErrorReason.WORKER_NOT_CONNECTED]);
    for (const controller of held) controller.abort();
    await eventually(() => small.runtime.stats().subscriptions === 0, 5_000, "every watch released");
  });

  it("answer StreamInput on a stopped worker with its permanent cause, WORKER_STOPPED, even when every slot is taken", async () => {
    const id = small.runtime.runtimeId;
    const worker = (await small.connect("grpc").catalog.createWorker({ runtimeId: id })).worker?.ref;
    await small.connect("grpc").catalog.stopWorker({ worker });
    const held = [new AbortController(), new AbortController()];
    for (const controller of held) {
      await small.connect("grpc").observation.watchWorker({ worker }, { signal: controller.signal })[Symbol.asyncIterator]().next();
    }
    // A full slot is transient (retry later); a stopped worker never takes the input: the client must hear the latter.
    for (const protocol of PROTOCOLS) {
      const { error, detail } = await expectError(() =>
        small
          .connect(protocol)
          .interaction.streamInput({ worker, input: { text: "hi" } })
          [Symbol.asyncIterator]()
          .next(),
      );
      expect([error.code, detail?.reason], protocol).toEqual([Code.FailedPrecondition, ErrorReason.WORKER_STOPPED]);
    }
    for (const controller of held) controller.abort();
    await eventually(() => small.runtime.stats().subscriptions === 0, 5_000, "every watch released");
    // With a slot free it is the same answer, and no slot is left taken.
    const { error, detail } = await expectError(() =>
      small
        .connect("grpc")
        .interaction.streamInput({ worker, input: { text: "hi" } })
        [Symbol.asyncIterator]()
        .next(),
    );
    expect([error.code, detail?.reason]).toEqual([Code.FailedPrecondition, ErrorReason.WORKER_STOPPED]);
    expect(small.runtime.stats().subscriptions).toBe(0);
  });

  it("refuse a worker past maxWorkers, and a capability the runtime does not offer (it has no execution backend)", async () => {
    const clients = small.connect("grpc");
    const runtimeId = small.runtime.runtimeId;
    const notOffered = await expectError(() =>
      clients.catalog.createWorker({ runtimeId, capabilities: ["fs.read"], workspace: { root: "x" } }),
    );
    expect([notOffered.error.code, notOffered.detail?.reason, notOffered.detail?.metadata["capability"]]).toEqual([
      Code.FailedPrecondition,
      ErrorReason.CAPABILITY_DENIED,
      "fs.read",
    ]);
    while (small.runtime.stats().workers < 4) await clients.catalog.createWorker({ runtimeId });
    const full = await expectError(() => clients.catalog.createWorker({ runtimeId }));
    expect([full.error.code, full.detail?.reason, full.detail?.metadata["limit"]]).toEqual([
      Code.ResourceExhausted,
      ErrorReason.LIMIT_EXCEEDED,
      "4",
    ]);
  });
});
