import { cp, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { create, type JsonObject, toJson } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunSchema, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { TranscriptEntrySchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { WorkerSchema, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { type Clients, runToEnd, startHarness } from "../support/harness.js";
import { replyChunks } from "../support/openai-chunks.js";

/**
 * Upgrading in place: a data dir an older build wrote (and was killed
 * with SIGKILL in, mid-run) is opened by this one. Each fixture under
 * test/fixtures/data-dirs/ was written by the build its name gives, with
 * write-data-dir.ts, which also kept what that build answered before the
 * kill (`written.json`). Nothing it answered may be lost or changed, the runs the
 * kill cut are ended INTERRUPTED (the streaming one with its notice), and
 * the data dir takes new work and opens again.
 */
const FIXTURES = fileURLToPath(new URL("../fixtures/data-dirs/", import.meta.url));
const builds = (await readdir(FIXTURES, { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name);

interface WorkerRead {
  worker: JsonObject & { ref: { runtimeId: string; workerId: string } };
  runs: (JsonObject & { runId: string })[];
  transcript: JsonObject[];
}
interface Written {
  answered: WorkerRead;
  crashed: WorkerRead;
  stopped: WorkerRead;
  streaming: string;
  queued: string;
  /** The last durable event a watcher of that build saw on the crashed worker. */
  watchCursor: { cursor: string; seq: string };
}

let dir: string;
let fake: FakeOpenAI;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-older-"));
  fake = await startFakeOpenAI();
  fake.setFallback({ kind: "stream", chunks: replyChunks({ text: "after the upgrade", usage: { prompt: 1, completion: 1 } }) });
});
afterEach(async () => {
  await fake.close();
  await rm(dir, { recursive: true, force: true });
});

async function open(dataDir: string) {
  const harness = await startHarness({
    runtimeId: "rt-older",
    store: createFileStore({ dataDir }),
    executionBackend: createOpenAIBackend({ apiKey: "sk-test", baseURL: fake.baseURL }),
  });
  return { harness, clients: harness.connect("grpc") };
}

async function read(clients: Clients, worker: WorkerRef) {
  return {
    worker: (await clients.catalog.getWorker({ worker })).worker,
    runs: (await clients.interaction.listRuns({ worker, pageSize: 100 })).runs.map((run) => toJson(RunSchema, run) as JsonObject),
    transcript: (await clients.observation.readTranscript({ worker, limit: 100 })).entries.map(
      (entry) => toJson(TranscriptEntrySchema, entry) as JsonObject,
    ),
  };
}

describe.each(builds)("a data dir written by build %s", (build) => {
  it("opens with everything that build answered, the runs its kill cut INTERRUPTED, and takes new work", async () => {
    const written = JSON.parse(await readFile(path.join(FIXTURES, build, "written.json"), "utf8")) as Written;
    const dataDir = path.join(dir, "data");
    await cp(path.join(FIXTURES, build, "data"), dataDir, { recursive: true });

    let { harness, clients } = await open(dataDir);
    try {
      for (const before of [written.answered, written.crashed, written.stopped]) {
        const now = await read(clients, before.worker.ref as WorkerRef);
        const worker = toJson(WorkerSchema, now.worker ?? create(WorkerSchema)) as JsonObject;
        for (const field of ["ref", "displayName", "labels", "createdAt"]) expect(worker[field], field).toEqual(before.worker[field]);
        for (const run of before.runs) expect(now.runs.find((r) => r.runId === run.runId)).toEqual(run);
        expect(now.transcript.slice(0, before.transcript.length)).toEqual(before.transcript);
      }
      const crashed = written.crashed.worker.ref as WorkerRef;
      const ended = await read(clients, crashed);
      expect(ended.runs.find((run) => run.runId === written.streaming)?.status).toBe("RUN_STATUS_INTERRUPTED");
      expect(ended.runs.find((run) => run.runId === written.queued)?.status).toBe("RUN_STATUS_INTERRUPTED");
      expect(ended.transcript.at(-1)).toMatchObject({ runId: written.streaming, notice: { code: "run.interrupted" } });
      expect(ended.worker?.status).toBe(WorkerStatus.IDLE);
      expect((await read(clients, written.stopped.worker.ref as WorkerRef)).worker?.status).toBe(WorkerStatus.STOPPED);

      // That build's watcher resumes: the next event after its cursor, not CURSOR_EXPIRED or a replay from the start.
      expect(written.watchCursor.cursor).not.toBe("");
      expect(await firstEventAfter(clients, crashed, written.watchCursor.cursor)).toBe(BigInt(written.watchCursor.seq) + 1n);
      expect((await runToEnd(clients, crashed, "after the upgrade"))?.status).toBe(RunStatus.COMPLETED);
      const afterWork = await read(clients, crashed);
      await harness.close();

      // Its format recorded now, so that a later build that changes the format is refused by this one.
      expect(await readFile(path.join(dataDir, "FORMAT"), "utf8")).toBe("worker-runtime data dir format 1\n");
      ({ harness, clients } = await open(dataDir));
      expect(await read(clients, crashed)).toEqual({ ...afterWork, worker: expect.anything() });
      expect((await read(clients, written.answered.worker.ref as WorkerRef)).runs).toHaveLength(written.answered.runs.length);
    } finally {
      await harness.close();
    }
  });
});

/** The seq of the first durable event a watch from `afterCursor` gets. */
async function firstEventAfter(clients: Clients, worker: WorkerRef, afterCursor: string): Promise<bigint | undefined> {
  const abort = new AbortController();
  try {
    for await (const response of clients.observation.watchWorker({ worker, afterCursor }, { signal: abort.signal })) {
      const event = response.events.find((e) => e.seq > 0n);
      if (event) return event.seq;
    }
  } finally {
    abort.abort();
  }
  return undefined;
}
