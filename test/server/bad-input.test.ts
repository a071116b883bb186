import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BusyPolicy, WorkerRefSchema, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { expectError, expectReason } from "../support/errors.js";
import { PROTOCOLS, startHarness, type Clients, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * Bad input over the wire: every malformed field is refused with the code
 * the API documents and our typed ErrorDetail, over gRPC and Connect alike,
 * and a valid request built the same way succeeds (so the bad field is what
 * was refused, not the request as a whole).
 */

const MAX_INPUT_BYTES = 256;
const MAX_MESSAGE_BYTES = 32 * 1024;

/** Ids the API's id rule (1-64 of [A-Za-z0-9._-], not "." or "..") refuses. */
const MALFORMED_IDS: readonly [string, string][] = [
  ["empty", ""],
  ["65 characters", "a".repeat(65)],
  ["path traversal", "../x"],
  ["dot-dot", ".."],
  ["slash", "a/b"],
  ["space", "a b"],
  ["unicode", "wörker"],
  ["emoji", "w-😀"],
  ["NUL", "w\u0000"],
  ["newline", "w\n"],
];

let harness: Harness;
let runtimeId: string;

beforeAll(async () => {
  harness = await startHarness({
    executionBackend: new ScriptedBackend(),
    limits: { maxInputBytes: MAX_INPUT_BYTES, maxMessageBytes: MAX_MESSAGE_BYTES },
  });
  runtimeId = harness.runtime.runtimeId;
});

afterAll(async () => {
  await harness.close();
});

describe.each(PROTOCOLS)("bad input over %s", (protocol) => {
  let clients: Clients;
  let worker: WorkerRef;
  let runId: string;

  beforeAll(async () => {
    clients = harness.connect(protocol);
    const created = await clients.catalog.createWorker({ runtimeId, displayName: `bad-input-${protocol}` });
    worker = created.worker?.ref ?? create(WorkerRefSchema);
    const sent = await clients.interaction.sendInput({ worker, input: { text: "hello" } });
    runId = sent.run?.runId ?? "";
    expect(runId).not.toBe("");
  });

  const ref = (init: Partial<Pick<WorkerRef, "runtimeId" | "workerId">>): WorkerRef =>
    create(WorkerRefSchema, { runtimeId: worker.runtimeId, workerId: worker.workerId, ...init });

  it("accepts the well-formed baseline requests", async () => {
    expect((await clients.catalog.getWorker({ worker })).worker?.ref?.workerId).toBe(worker.workerId);
    expect((await clients.interaction.getRun({ worker, runId })).run?.runId).toBe(runId);
    expect((await clients.catalog.listWorkers({ runtimeId, pageSize: 1 })).workers).toHaveLength(1);
  });

  describe.each(MALFORMED_IDS)("a malformed id (%s)", (_label, bad) => {
    it("is INVALID_ARGUMENT as a worker_id, naming the field", async () => {
      const detail = await expectReason(
        () => clients.catalog.getWorker({ worker: ref({ workerId: bad }) }),
        Code.InvalidArgument,
        ErrorReason.INVALID_ARGUMENT,
      );
      expect(detail.metadata["field"]).toBe("worker.worker_id");
      await expectReason(
        () => clients.catalog.stopWorker({ worker: ref({ workerId: bad }) }),
        Code.InvalidArgument,
        ErrorReason.INVALID_ARGUMENT,
      );
      await expectReason(
        () => clients.interaction.sendInput({ worker: ref({ workerId: bad }), input: { text: "hi" } }),
        Code.InvalidArgument,
        ErrorReason.INVALID_ARGUMENT,
      );
    });

    it("is INVALID_ARGUMENT as a runtime_id", async () => {
      const detail = await expectReason(
        () => clients.catalog.getWorker({ worker: ref({ runtimeId: bad }) }),
        Code.InvalidArgument,
        ErrorReason.INVALID_ARGUMENT,
      );
      expect(detail.metadata["field"]).toBe("worker.runtime_id");
      await expectReason(() => clients.catalog.listWorkers({ runtimeId: bad }), Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT);
      await expectReason(() => clients.catalog.createWorker({ runtimeId: bad }), Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT);
    });

    it("is INVALID_ARGUMENT as a run_id", async () => {
      const detail = await expectReason(
        () => clients.interaction.getRun({ worker, runId: bad }),
        Code.InvalidArgument,
        ErrorReason.INVALID_ARGUMENT,
      );
      expect(detail.metadata["field"]).toBe("run_id");
      await expectReason(() => clients.interaction.cancelRun({ worker, runId: bad }), Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT);
    });
  });

  it("refuses a missing worker ref with INVALID_ARGUMENT", async () => {
    const detail = await expectReason(() => clients.catalog.getWorker({}), Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT);
    expect(detail.metadata["field"]).toBe("worker");
  });

  it("refuses a malformed id on a stream before its first message", async () => {
    const stream = clients.observation.watchWorker({ worker: ref({ workerId: "../x" }) });
    await expectReason(
      async () => {
        for await (const message of stream) return message;
        return undefined;
      },
      Code.InvalidArgument,
      ErrorReason.INVALID_ARGUMENT,
    );
  });

  it("refuses negative page sizes on every List RPC", async () => {
    const calls: (() => Promise<unknown>)[] = [
      () => clients.catalog.listWorkers({ runtimeId, pageSize: -1 }),
      () => clients.interaction.listRuns({ worker, pageSize: -5 }),
      () => clients.management.listDiagnostics({ pageSize: -1 }),
      () => clients.management.listAllocations({ pageSize: -2147483648 }),
    ];
    for (const call of calls) {
      const detail = await expectReason(call, Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT);
      expect(detail.metadata["field"]).toBe("page_size");
    }
  });

  it("clamps oversized page sizes instead of refusing them", async () => {
    const listed = await clients.catalog.listWorkers({ runtimeId, pageSize: 2_000_000_000 });
    expect(listed.workers.length).toBeGreaterThanOrEqual(1);
  });

  it("refuses malformed page tokens and tokens of another list", async () => {
    // Enough workers for a second page, so a real ListWorkers token exists.
    await clients.catalog.createWorker({ runtimeId, displayName: "page-2" });
    const firstPage = await clients.catalog.listWorkers({ runtimeId, pageSize: 1 });
    const workersToken = firstPage.nextPageToken;
    expect(workersToken).not.toBe("");
    const malformed = [
      "!!!",
      "not a token",
      Buffer.from("{}").toString("base64url"),
      Buffer.from(JSON.stringify(["workers", { nested: true }])).toString("base64url"),
      "A".repeat(600),
      "\u00e9\u00e9",
    ];
    for (const pageToken of malformed) {
      const detail = await expectReason(
        () => clients.catalog.listWorkers({ runtimeId, pageToken }),
        Code.InvalidArgument,
        ErrorReason.PAGE_TOKEN_INVALID,
      );
      expect(detail.metadata["field"]).toBe("page_token");
    }
    // A token is bound to its list.
    await expectReason(
      () => clients.interaction.listRuns({ worker, pageToken: workersToken }),
      Code.InvalidArgument,
      ErrorReason.PAGE_TOKEN_INVALID,
    );
    await expectReason(
      () => clients.management.listDiagnostics({ pageToken: workersToken }),
      Code.InvalidArgument,
      ErrorReason.PAGE_TOKEN_INVALID,
    );
    await expectReason(
      () => clients.management.listAllocations({ pageToken: workersToken }),
      Code.InvalidArgument,
      ErrorReason.PAGE_TOKEN_INVALID,
    );
    // ...and still works where it belongs.
    const secondPage = await clients.catalog.listWorkers({ runtimeId, pageSize: 1, pageToken: workersToken });
    expect(secondPage.workers[0]?.ref?.workerId).not.toBe(firstPage.workers[0]?.ref?.workerId);
  });

  it("refuses a malformed watch cursor", async () => {
    const cases: Array<[string, ErrorReason]> = [
      ["garbage", ErrorReason.INVALID_ARGUMENT],
      ["r1", ErrorReason.CURSOR_FOREIGN],
      ["w!", ErrorReason.INVALID_ARGUMENT],
      [`w${"z".repeat(40)}`, ErrorReason.INVALID_ARGUMENT],
    ];
    for (const [afterCursor, reason] of cases) {
      const stream = clients.observation.watchWorker({ worker, afterCursor });
      await expectReason(
        async () => {
          for await (const message of stream) return message;
          return undefined;
        },
        Code.InvalidArgument,
        reason,
      );
    }
  });

  it("refuses a foreign runtime_id with RUNTIME_MISMATCH naming our id", async () => {
    const foreign = "rt-somewhere-else";
    const calls: (() => Promise<unknown>)[] = [
      () => clients.catalog.createWorker({ runtimeId: foreign }),
      () => clients.catalog.listWorkers({ runtimeId: foreign }),
      () => clients.catalog.getWorker({ worker: ref({ runtimeId: foreign }) }),
      () => clients.catalog.deleteWorker({ worker: ref({ runtimeId: foreign }), force: true }),
      () => clients.interaction.sendInput({ worker: ref({ runtimeId: foreign }), input: { text: "hi" } }),
      () => clients.interaction.getRun({ worker: ref({ runtimeId: foreign }), runId }),
      () => clients.observation.readTranscript({ worker: ref({ runtimeId: foreign }) }),
    ];
    for (const call of calls) {
      const detail = await expectReason(call, Code.InvalidArgument, ErrorReason.RUNTIME_MISMATCH);
      expect(detail.metadata["runtime_id"]).toBe(runtimeId);
    }
    const watch = clients.observation.watchRuntime({ runtimeId: foreign });
    await expectReason(
      async () => {
        for await (const message of watch) return message;
        return undefined;
      },
      Code.InvalidArgument,
      ErrorReason.RUNTIME_MISMATCH,
    );
    // The worker was not touched by the foreign delete.
    expect((await clients.catalog.getWorker({ worker })).worker?.ref?.workerId).toBe(worker.workerId);
  });

  it("answers NOT_FOUND for an unknown worker on every worker RPC", async () => {
    const unknown = ref({ workerId: "w-does-not-exist" });
    const calls: (() => Promise<unknown>)[] = [
      () => clients.catalog.getWorker({ worker: unknown }),
      () => clients.catalog.stopWorker({ worker: unknown }),
      () => clients.catalog.deleteWorker({ worker: unknown, force: true }),
      () => clients.interaction.sendInput({ worker: unknown, input: { text: "hi" } }),
      () => clients.interaction.cancelRun({ worker: unknown, runId }),
      () => clients.interaction.getRun({ worker: unknown, runId }),
      () => clients.interaction.listRuns({ worker: unknown }),
      () => clients.interaction.resolveApproval({ worker: unknown, runId, toolCallId: "c1", decision: ApprovalDecision.APPROVE }),
      () => clients.observation.readTranscript({ worker: unknown }),
      async () => {
        for await (const message of clients.observation.watchWorker({ worker: unknown })) return message;
        return undefined;
      },
      async () => {
        for await (const message of clients.interaction.streamInput({ worker: unknown, input: { text: "hi" } })) return message;
        return undefined;
      },
    ];
    for (const call of calls) {
      const detail = await expectReason(call, Code.NotFound, ErrorReason.NOT_FOUND);
      expect(detail.metadata["worker_id"]).toBe("w-does-not-exist");
    }
  });

  it("answers NOT_FOUND for an unknown run of a known worker", async () => {
    await expectReason(() => clients.interaction.getRun({ worker, runId: "r-does-not-exist" }), Code.NotFound, ErrorReason.NOT_FOUND);
    await expectReason(() => clients.interaction.cancelRun({ worker, runId: "r-does-not-exist" }), Code.NotFound, ErrorReason.NOT_FOUND);
  });

  it("refuses input text over maxInputBytes with LIMIT_EXCEEDED naming the limit", async () => {
    // Multi-byte characters: the limit is in UTF-8 bytes, not characters.
    const tooLong = "é".repeat(MAX_INPUT_BYTES / 2 + 1);
    const detail = await expectReason(
      () => clients.interaction.sendInput({ worker, input: { text: tooLong } }),
      Code.InvalidArgument,
      ErrorReason.LIMIT_EXCEEDED,
    );
    expect(detail.metadata).toMatchObject({ field: "input.text", limit: String(MAX_INPUT_BYTES) });
    await expectReason(
      () => clients.catalog.createWorker({ runtimeId, initialInput: { text: tooLong } }),
      Code.InvalidArgument,
      ErrorReason.LIMIT_EXCEEDED,
    );
    // Exactly at the limit is accepted.
    const atLimit = await clients.interaction.sendInput({
      worker,
      input: { text: "é".repeat(MAX_INPUT_BYTES / 2) },
      busyPolicy: BusyPolicy.ENQUEUE,
    });
    expect(atLimit.run?.runId).toMatch(/^r-/);
  });

  it("refuses empty input with INVALID_ARGUMENT", async () => {
    await expectReason(
      () => clients.interaction.sendInput({ worker, input: { text: "" } }),
      Code.InvalidArgument,
      ErrorReason.INVALID_ARGUMENT,
    );
    await expectReason(() => clients.interaction.sendInput({ worker }), Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT);
  });

  it("refuses unknown enum values with INVALID_ARGUMENT naming the field", async () => {
    const cases: [string, () => Promise<unknown>][] = [
      ["busy_policy", () => clients.interaction.sendInput({ worker, input: { text: "hi" }, busyPolicy: 99 as BusyPolicy })],
      ["statuses[0]", () => clients.catalog.listWorkers({ runtimeId, statuses: [99 as WorkerStatus] })],
      ["statuses[1]", () => clients.catalog.listWorkers({ runtimeId, statuses: [WorkerStatus.IDLE, -3 as WorkerStatus] })],
      ["decision", () => clients.interaction.resolveApproval({ worker, runId, toolCallId: "c1", decision: 99 as ApprovalDecision })],
      ["decision", () => clients.interaction.resolveApproval({ worker, runId, toolCallId: "c1" })],
      ["status", () => clients.interaction.listRuns({ worker, status: 99 as RunStatus })],
      ["min_severity", () => clients.management.listDiagnostics({ minSeverity: 99 as DiagnosticSeverity })],
    ];
    for (const [field, call] of cases) {
      const detail = await expectReason(call, Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT);
      expect(detail.metadata["field"]).toBe(field);
    }
    const stream = clients.interaction.streamInput({ worker, input: { text: "hi" }, busyPolicy: 99 as BusyPolicy });
    const detail = await expectReason(
      async () => {
        for await (const message of stream) return message;
        return undefined;
      },
      Code.InvalidArgument,
      ErrorReason.INVALID_ARGUMENT,
    );
    expect(detail.metadata["field"]).toBe("busy_policy");
  });

  it("refuses a request over the message-size limit with RESOURCE_EXHAUSTED and stays healthy", async () => {
    const { error, detail } = await expectError(() =>
      clients.catalog.createWorker({ runtimeId, intent: "x".repeat(MAX_MESSAGE_BYTES + 1) }),
    );
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(detail?.reason).toBe(ErrorReason.LIMIT_EXCEEDED);
    // The same connection keeps working.
    expect((await clients.management.getRuntime({})).runtime?.runtimeId).toBe(runtimeId);
    expect((await clients.health.check({})).status).toBe(1);
  });
});

describe("bad input as Connect JSON over HTTP/1.1", () => {
  const post = async (method: string, body: string): Promise<{ status: number; json: ConnectErrorJson }> => {
    const response = await fetch(`${harness.http1Url}/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-protocol-version": "1" },
      body,
    });
    return { status: response.status, json: (await response.json()) as ConnectErrorJson };
  };

  it("refuses an unknown enum name rather than dropping it", async () => {
    const { status, json } = await post(
      "worker_runtime.v1.WorkerCatalog/ListWorkers",
      JSON.stringify({ runtimeId, statuses: ["WORKER_STATUS_NOPE"] }),
    );
    expect(status).toBe(400);
    expect(json.code).toBe("invalid_argument");
    expect(reasonOf(json)).toBe("ERROR_REASON_INVALID_ARGUMENT");
  });

  it("refuses an unknown enum number with the typed detail", async () => {
    const { status, json } = await post("worker_runtime.v1.WorkerCatalog/ListWorkers", JSON.stringify({ runtimeId, statuses: [99] }));
    expect(status).toBe(400);
    expect(json.code).toBe("invalid_argument");
    expect(reasonOf(json)).toBe("ERROR_REASON_INVALID_ARGUMENT");
  });

  it("refuses undecodable JSON with INVALID_ARGUMENT and the typed detail", async () => {
    for (const body of ["{not json", JSON.stringify({ runtimeId, pageSize: "many" }), "[]"]) {
      const { status, json } = await post("worker_runtime.v1.WorkerCatalog/ListWorkers", body);
      expect(status).toBe(400);
      expect(json.code).toBe("invalid_argument");
      expect(reasonOf(json)).toBe("ERROR_REASON_INVALID_ARGUMENT");
    }
  });
});

/** A Connect error body; `debug` is the JSON form connect-es adds to details. */
interface ConnectErrorJson {
  code?: string;
  message?: string;
  details?: { type: string; value: string; debug?: { reason?: string } }[];
}

function reasonOf(json: ConnectErrorJson): string | undefined {
  return json.details?.find((d) => d.type === "worker_runtime.v1.ErrorDetail")?.debug?.reason;
}
