import { Code, ConnectError } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { expectEndedByDelete, follow, sawText } from "../support/followed-stream.js";
import { eventually, type Harness, PROTOCOLS, startHarness } from "../support/harness.js";
import { chunk } from "../support/openai-chunks.js";

/**
 * A force-delete whose stop of the worker succeeds but whose store delete
 * fails (here the file store's fsync of the directory it renamed the
 * worker's files out of fails, via its test-only fault hook): the worker
 * still exists, so nothing may have told its streams it was deleted. The
 * StreamInput whose run the delete cancelled used to end with NOT_FOUND
 * "worker W was deleted", the watch too, and GetWorker answered NOT_FOUND,
 * while the worker was back after a restart. Now the StreamInput ends with
 * the delete's own failure (UNAVAILABLE, STORE_UNAVAILABLE), the watch goes
 * on (the worker is there, STOPPED), reads find the worker, and a later
 * delete that succeeds ends the watch with NOT_FOUND. A real server on
 * 127.0.0.1, the generated clients over HTTP/2, both protocols; the provider
 * is the local fake, answering with text and then holding the stream open.
 */

let fake: FakeOpenAI;
let harness: Harness;
let dataDir: string;
let storeFails = false;

beforeAll(async () => {
  fake = await startFakeOpenAI();
  fake.setFallback({ kind: "stream", chunks: [chunk({ role: "assistant", content: "" }), chunk({ content: "Hello" })], end: "hang" });
  dataDir = await mkdtemp(path.join(os.tmpdir(), "wr-failed-delete-"));
  const faults = {
    beforeSync(file: string): void {
      if (storeFails && file === "workers") throw Object.assign(new Error("input/output error"), { code: "EIO" });
    },
  };
  harness = await startHarness({
    runtimeId: "rt-faildel",
    store: createFileStore({ dataDir, faults }),
    executionBackend: createOpenAIBackend({ apiKey: "sk-test", baseURL: fake.baseURL }),
  });
});

afterAll(async () => {
  await harness?.close();
  await fake?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe("streams of a worker whose force-delete fails in the store", () => {
  for (const protocol of PROTOCOLS) {
    it(`are not told it was deleted; the worker stays, and a later delete ends them with NOT_FOUND (${protocol})`, async () => {
      const clients = harness.connect(protocol);
      const worker = (await clients.catalog.createWorker({ runtimeId: "rt-faildel" })).worker?.ref as WorkerRef;
      const watch = follow(clients.observation.watchWorker({ worker }));
      const input = follow(clients.interaction.streamInput({ worker, input: { text: "hi" } }));
      await eventually(() => sawText(watch) && sawText(input), 10_000, "the run's text on both streams");

      storeFails = true;
      const refused = await clients.catalog.deleteWorker({ worker, force: true }).then(
        () => "deleted",
        (error: unknown) => ConnectError.from(error),
      );
      storeFails = false;
      expect(refused).toBeInstanceOf(ConnectError);
      expect([(refused as ConnectError).code, (refused as ConnectError).findDetails(ErrorDetailSchema)[0]?.reason]).toEqual([
        Code.Unavailable,
        ErrorReason.STORE_UNAVAILABLE,
      ]);

      // The StreamInput saw its run cancelled, then the delete's failure, not "deleted".
      const inputEnd = await input.ended;
      expect(inputEnd).toBeInstanceOf(ConnectError);
      const error = inputEnd as ConnectError;
      expect([error.code, error.rawMessage]).toEqual([
        Code.Unavailable,
        `worker ${worker.workerId} was not deleted: the runtime could not persist the request; retry later`,
      ]);
      expect(error.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.STORE_UNAVAILABLE);
      expect(error.findDetails(ErrorDetailSchema)[0]?.metadata).toEqual({ worker_id: worker.workerId });
      const runEnds = input.events.flatMap((event) => (event.kind.case === "runChanged" ? [event.kind.value.status] : []));
      expect(runEnds.at(-1)).toBe(RunStatus.CANCELLED);

      // The worker is there, as its store says: stopped, listed, its transcript readable.
      const got = (await clients.catalog.getWorker({ worker })).worker;
      expect(got?.status).toBe(WorkerStatus.STOPPED);
      const listed = (await clients.catalog.listWorkers({ runtimeId: "rt-faildel" })).workers.map((w) => w.ref?.workerId);
      expect(listed).toContain(worker.workerId);
      const transcript = await clients.observation.readTranscript({ worker, limit: 10 });
      expect(transcript.entries[0]?.content.case).toBe("userMessage");

      // The watch went on through the failure: the delete that succeeds is what ends it, with NOT_FOUND.
      await clients.catalog.deleteWorker({ worker });
      await expectEndedByDelete(watch, worker.workerId);
      const gone = await clients.catalog.getWorker({ worker }).then(
        () => "found",
        (e: unknown) => ConnectError.from(e).code,
      );
      expect(gone).toBe(Code.NotFound);
    }, 30_000);
  }
});
