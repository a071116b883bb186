import { Code } from "@connectrpc/connect";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createPinoLogger } from "../../src/cli/pino-logger.js";
import { expectError } from "../support/errors.js";
import { type Clients, eventually, runToEnd } from "../support/harness.js";
import { type LogLine, logCapture } from "../support/log-lines.js";
import { damageFirstSegment } from "../support/damaged-segment.js";
import { useDamageableRuntime } from "../support/damageable-runtime.js";

/**
 * What a quarantined worker tells its users, and what the runtime tells its
 * operator. `Worker.failure_message` and the WORKER_FAILED refusal used to
 * name the damaged file (`workers/<id>/worker.snapshot`), so API clients and,
 * through the Backend, browsers saw the data dir's layout, while the log had
 * no line at all for damage found at start-up. Now the user is told in plain
 * words what is damaged, with no file in it; the operator's log (the
 * runtime's logger, error level) names the absolute file and what is wrong
 * with it. Damage found at start-up (a snapshot that is not one) and damage a
 * read finds later (a sealed transcript segment) both.
 */
let capture: ReturnType<typeof logCapture>;
const stored = useDamageableRuntime("wr-quarantine-message-", {
  runtimeId: "rq",
  segmentBytes: 300,
  logger: () => createPinoLogger({ level: "info", payloads: false, destination: capture.destination }),
});
beforeEach(() => {
  capture = logCapture();
});

/** What a user sees of a quarantined worker: plain words, no file, no path. */
async function expectPlainWords(clients: Clients, worker: WorkerRef): Promise<void> {
  const failed = (await clients.catalog.getWorker({ worker })).worker;
  expect(failed?.status).toBe(WorkerStatus.FAILED);
  const message = failed?.failureMessage ?? "";
  expect(message).toMatch(/stored state is damaged/);
  expect(message).toMatch(/kept for inspection/);
  for (const text of [
    message,
    (await expectError(() => clients.interaction.sendInput({ worker, input: { text: "hi" } }))).error.rawMessage,
  ]) {
    expect(text).not.toMatch(/snapshot|\.log|workers|\//);
    expect(text).not.toContain(stored.dir);
  }
  const { error, detail } = await expectError(() => clients.interaction.sendInput({ worker, input: { text: "hi" } }));
  expect([error.code, detail?.reason]).toEqual([Code.FailedPrecondition, ErrorReason.WORKER_FAILED]);
  expect(error.rawMessage).toContain(message);
}

/** The operator's error line for the damage: it names the absolute file and what is wrong with it. */
function errorLineNaming(file: string, problem: RegExp): LogLine | undefined {
  return capture.lines.find((line) => line.level === "error" && JSON.stringify(line).includes(file) && problem.test(JSON.stringify(line)));
}

describe("a quarantined worker", () => {
  it("found damaged at start-up: users read plain words, the operator's log names the absolute file and the error", async () => {
    const first = await stored.serve();
    const worker = (await first.connect("grpc").catalog.createWorker({ runtimeId: "rq", displayName: "Named" })).worker?.ref as WorkerRef;
    await first.close();
    const snapshot = path.join(stored.dir, "workers", worker.workerId, "worker.snapshot");
    await writeFile(snapshot, "not a snapshot at all, just text");

    const second = await stored.serve();
    try {
      await expectPlainWords(second.connect("grpc"), worker);
      await expectPlainWords(second.connect("connect"), worker);
      const line = errorLineNaming(snapshot, /bad record marker/);
      expect(line, JSON.stringify(capture.lines)).toBeDefined();
      expect(line).toMatchObject({ worker_id: worker.workerId });
    } finally {
      await second.close();
    }
  });

  it("found damaged by a read while served: the same", async () => {
    const first = await stored.serve();
    const clients = first.connect("grpc");
    const worker = (await clients.catalog.createWorker({ runtimeId: "rq" })).worker?.ref as WorkerRef;
    for (let i = 0; i < 6; i++) expect((await runToEnd(clients, worker, `message ${i}`))?.status).toBe(RunStatus.COMPLETED);
    await first.close();
    // A sealed segment is trusted at open; the first read of it finds the damage.
    const segment = await damageFirstSegment(path.join(stored.dir, "workers", worker.workerId));

    const second = await stored.serve();
    try {
      const again = second.connect("grpc");
      await expectError(() => again.observation.readTranscript({ worker, position: { case: "afterSeq", value: 0n } }));
      await eventually(async () => (await again.catalog.getWorker({ worker })).worker?.status === WorkerStatus.FAILED);
      await expectPlainWords(again, worker);
      const line = errorLineNaming(segment, /record 1 is damaged/);
      expect(line, JSON.stringify(capture.lines)).toBeDefined();
      expect(line).toMatchObject({ worker_id: worker.workerId });
    } finally {
      await second.close();
    }
  });
});
