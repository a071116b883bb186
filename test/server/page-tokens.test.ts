import { Code } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { expectReason } from "../support/errors.js";
import { eventually, PROTOCOLS, startHarness, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * Issue 7, interop papercuts: page tokens were readable base64 JSON. They
 * are now opaque and tamper-evident (AIP-158), bound to their list and to
 * the request's filters, and survive a restart on the same data dir.
 */
const harnesses: Harness[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const harness of harnesses.splice(0)) await harness.close();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function started(options: Parameters<typeof startHarness>[0] = {}): Promise<Harness> {
  const harness = await startHarness(options);
  harnesses.push(harness);
  return harness;
}

/** Flips one character in the middle of a token, keeping it base64url. */
function tampered(token: string): string {
  const at = Math.floor(token.length / 2);
  return `${token.slice(0, at)}${token[at] === "A" ? "B" : "A"}${token.slice(at + 1)}`;
}

describe.each(PROTOCOLS)("page tokens over %s", (protocol) => {
  it("are opaque: nothing of the position or list can be read from them", async () => {
    const harness = await started();
    const clients = harness.connect(protocol);
    const runtimeId = harness.runtime.runtimeId;
    for (let i = 0; i < 3; i++) await clients.catalog.createWorker({ runtimeId, displayName: `w${i}` });
    const { workers, nextPageToken } = await clients.catalog.listWorkers({ runtimeId, pageSize: 1 });
    expect(nextPageToken).not.toBe("");
    const decoded = Buffer.from(nextPageToken, "base64url").toString("latin1");
    expect(decoded).not.toContain("workers");
    expect(decoded).not.toContain(workers[0]?.ref?.workerId ?? "?");
    expect(() => JSON.parse(Buffer.from(nextPageToken, "base64url").toString("utf8"))).toThrow();
  });

  it("refuses altered and forged tokens with PAGE_TOKEN_INVALID", async () => {
    const harness = await started();
    const clients = harness.connect(protocol);
    const runtimeId = harness.runtime.runtimeId;
    for (let i = 0; i < 3; i++) await clients.catalog.createWorker({ runtimeId });
    const { workers, nextPageToken } = await clients.catalog.listWorkers({ runtimeId, pageSize: 1 });
    const forgeries = [
      tampered(nextPageToken),
      nextPageToken.slice(0, -2),
      // What a client could write when tokens were base64 JSON: the list and a position.
      Buffer.from(JSON.stringify(["workers", workers[0]?.ref?.workerId ?? ""])).toString("base64url"),
    ];
    for (const pageToken of forgeries) {
      const detail = await expectReason(
        () => clients.catalog.listWorkers({ runtimeId, pageSize: 1, pageToken }),
        Code.InvalidArgument,
        ErrorReason.PAGE_TOKEN_INVALID,
      );
      expect(detail.metadata["field"]).toBe("page_token");
    }
    // The genuine token still works, also with another page size (AIP-158 allows it).
    const second = await clients.catalog.listWorkers({ runtimeId, pageSize: 2, pageToken: nextPageToken });
    expect(second.workers[0]?.ref?.workerId).not.toBe(workers[0]?.ref?.workerId);
  });

  it("refuses a token reused with other filters, or from another runtime", async () => {
    const harness = await started({ executionBackend: new ScriptedBackend() });
    const clients = harness.connect(protocol);
    const runtimeId = harness.runtime.runtimeId;
    for (let i = 0; i < 3; i++) await clients.catalog.createWorker({ runtimeId, labels: { team: "a" } });
    const byLabel = await clients.catalog.listWorkers({ runtimeId, pageSize: 1, labelSelector: { team: "a" } });
    expect(byLabel.nextPageToken).not.toBe("");
    const refusals = [
      () => clients.catalog.listWorkers({ runtimeId, pageSize: 1, pageToken: byLabel.nextPageToken }),
      () => clients.catalog.listWorkers({ runtimeId, pageSize: 1, labelSelector: { team: "b" }, pageToken: byLabel.nextPageToken }),
      () =>
        clients.catalog.listWorkers({
          runtimeId,
          pageSize: 1,
          labelSelector: { team: "a" },
          statuses: [WorkerStatus.IDLE],
          pageToken: byLabel.nextPageToken,
        }),
    ];
    for (const call of refusals) await expectReason(call, Code.InvalidArgument, ErrorReason.PAGE_TOKEN_INVALID);
    // Same filters in another spelling (UNSPECIFIED status = all; order and repeats) still page on.
    const byStatus = await clients.catalog.listWorkers({ runtimeId, pageSize: 1, statuses: [WorkerStatus.IDLE, WorkerStatus.STOPPED] });
    const reordered = await clients.catalog.listWorkers({
      runtimeId,
      pageSize: 1,
      statuses: [WorkerStatus.STOPPED, WorkerStatus.IDLE, WorkerStatus.IDLE],
      pageToken: byStatus.nextPageToken,
    });
    expect(reordered.workers).toHaveLength(1);
    const next = await clients.catalog.listWorkers({
      runtimeId,
      pageSize: 1,
      labelSelector: { team: "a" },
      statuses: [WorkerStatus.UNSPECIFIED],
      pageToken: byLabel.nextPageToken,
    });
    expect(next.workers).toHaveLength(1);

    // ListRuns: bound to the worker and to the status filter.
    const listed = await clients.catalog.listWorkers({ runtimeId, labelSelector: { team: "a" } });
    const [one, two] = listed.workers;
    let last = "";
    for (let i = 0; i < 3; i++) {
      const { run } = await clients.interaction.sendInput({ worker: one?.ref, input: { text: `m${i}` }, busyPolicy: BusyPolicy.ENQUEUE });
      last = run?.runId ?? "";
    }
    await eventually(async () => (await clients.interaction.getRun({ worker: one?.ref, runId: last })).run?.status === RunStatus.COMPLETED);
    const runs = await clients.interaction.listRuns({ worker: one?.ref, pageSize: 1 });
    expect(runs.nextPageToken).not.toBe("");
    await expectReason(
      () => clients.interaction.listRuns({ worker: two?.ref, pageToken: runs.nextPageToken }),
      Code.InvalidArgument,
      ErrorReason.PAGE_TOKEN_INVALID,
    );
    await expectReason(
      () => clients.interaction.listRuns({ worker: one?.ref, status: RunStatus.COMPLETED, pageToken: runs.nextPageToken }),
      Code.InvalidArgument,
      ErrorReason.PAGE_TOKEN_INVALID,
    );
    expect((await clients.interaction.listRuns({ worker: one?.ref, pageToken: runs.nextPageToken })).runs).toHaveLength(2);

    // Another runtime's key does not open it.
    const other = await started();
    const otherClients = other.connect(protocol);
    for (let i = 0; i < 2; i++) await otherClients.catalog.createWorker({ runtimeId: other.runtime.runtimeId });
    await expectReason(
      () =>
        otherClients.catalog.listWorkers({
          runtimeId: other.runtime.runtimeId,
          pageToken: byLabel.nextPageToken,
          labelSelector: { team: "a" },
        }),
      Code.InvalidArgument,
      ErrorReason.PAGE_TOKEN_INVALID,
    );
  });

  it("survives a restart on the same data dir", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "wr-page-token-"));
    dirs.push(dir);
    const first = await started({ store: createFileStore({ dataDir: dir }) });
    const runtimeId = first.runtime.runtimeId;
    const clients = first.connect(protocol);
    for (let i = 0; i < 3; i++) await clients.catalog.createWorker({ runtimeId });
    const page = await clients.catalog.listWorkers({ runtimeId, pageSize: 1 });
    harnesses.splice(harnesses.indexOf(first), 1);
    await first.close();

    const restarted = await started({ store: createFileStore({ dataDir: dir }) });
    const next = await restarted.connect(protocol).catalog.listWorkers({ runtimeId, pageSize: 5, pageToken: page.nextPageToken });
    expect(next.workers).toHaveLength(2);
    expect(next.workers.map((w) => w.ref?.workerId)).not.toContain(page.workers[0]?.ref?.workerId);
  });
});
