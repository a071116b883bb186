import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { createRuntime, type Logger, silentLogger } from "../../src/runtime/index.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { type Clients, eventually, PROTOCOLS } from "../support/harness.js";
import { chunk } from "../support/openai-chunks.js";
import { expectEndedByDelete, follow, sawText } from "../support/followed-stream.js";

/**
 * A worker deleted (force) while a client watches it through a Backend,
 * and follows a run of it with StreamInput: the runtime's NOT_FOUND ("worker
 * W was deleted", after the run's end) reaches the client unchanged, from a
 * remote runtime (a real server on 127.0.0.1 over HTTP/2) and from the
 * embedded one, and the Backend takes it for the end it is, not for a cut:
 * it does not open the remote worker's watch again (the remote runtime's
 * RPC log shows one WatchWorker per client watch). The relay used to get a
 * clean end for a deletion and reopen the watch to learn the NOT_FOUND.
 */

let fake: FakeOpenAI;
let served: BackendWithRemote;
/** The rpc_method of every call the remote runtime completed. */
const remoteCalls: string[] = [];

/** The remote runtime's logger: records which RPCs it completed. */
const recordingLogger: Logger = {
  debug: (_message, fields) => remoteCalls.push(String(fields?.rpc_method ?? "")),
  info: () => {},
  warn: (_message, fields) => remoteCalls.push(String(fields?.rpc_method ?? "")),
  error: (_message, fields) => remoteCalls.push(String(fields?.rpc_method ?? "")),
};

const remoteWatchWorkerCalls = () => remoteCalls.filter((method) => method.endsWith("/WatchWorker")).length;

beforeAll(async () => {
  fake = await startFakeOpenAI();
  fake.setFallback({ kind: "stream", chunks: [chunk({ role: "assistant", content: "" }), chunk({ content: "Hello" })], end: "hang" });
  const provider = () => createOpenAIBackend({ apiKey: "sk-test", baseURL: fake.baseURL });
  served = await startBackendWithRemote({
    remote: await createRuntime({ logger: silentLogger, runtimeId: "rs", executionBackend: provider() }),
    remoteServer: { logger: recordingLogger },
    embedded: await createRuntime({ logger: silentLogger, runtimeId: "emb", executionBackend: provider() }),
  });
}, 30_000);

afterAll(async () => {
  await served?.close();
  await fake?.close();
});

describe("a worker deleted while watched through a Backend", () => {
  for (const runtimeId of ["rs", "emb"]) {
    for (const protocol of PROTOCOLS) {
      it(`ends the watch and the StreamInput with the runtime's NOT_FOUND, without reopening (${runtimeId}, ${protocol})`, async () => {
        const clients: Clients = served.clients(protocol);
        const worker = (await clients.catalog.createWorker({ runtimeId })).worker?.ref as WorkerRef;
        const opensBefore = remoteWatchWorkerCalls();
        const watch = follow(clients.observation.watchWorker({ worker }));
        const input = follow(clients.interaction.streamInput({ worker, input: { text: "hi" } }));
        await eventually(() => sawText(watch) && sawText(input), 10_000, "the run's text on both streams");

        await clients.catalog.deleteWorker({ worker, force: true });

        for (const stream of [watch, input]) await expectEndedByDelete(stream, worker.workerId);
        if (runtimeId === "rs") {
          // The one upstream watch the relay opened, ended by the deletion; none opened after it.
          await eventually(() => remoteWatchWorkerCalls() > opensBefore, 5_000, "the upstream watch's end in the remote's log");
          expect(remoteWatchWorkerCalls() - opensBefore).toBe(1);
        }
        // The runtime's health is untouched by a typed end.
        expect(served.backend.directory.get("rs")?.health).toBe(RuntimeHealth.READY);
      }, 30_000);
    }
  }
});
