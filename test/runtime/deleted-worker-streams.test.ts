import { create } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { WatchWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { RuntimeError } from "../../src/runtime/index.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { type Clients, eventually, type Harness, PROTOCOLS, startHarness } from "../support/harness.js";
import { chunk } from "../support/openai-chunks.js";
import { expectEndedByDelete, follow, sawText } from "../support/followed-stream.js";

/**
 * A worker deleted (force) while a run of it streams ends its streams with a
 * typed NOT_FOUND naming the worker, after every event they already hold:
 * a WatchWorker gets the run's end and the worker's STOPPED, then the error;
 * a StreamInput following the run gets the run's end, then the error. They
 * used to end cleanly, as every stream ends when the runtime shuts down, so
 * clients had to ask GetWorker which of the two it was. A shutdown still
 * ends them cleanly. A real server on 127.0.0.1, the generated clients over
 * real HTTP/2, both protocols; the provider is the local fake, answering
 * with some text and then holding the stream open.
 */

let fake: FakeOpenAI;
let harness: Harness;

beforeAll(async () => {
  fake = await startFakeOpenAI();
  fake.setFallback({ kind: "stream", chunks: [chunk({ role: "assistant", content: "" }), chunk({ content: "Hello" })], end: "hang" });
  harness = await startHarness({
    runtimeId: "rt-del",
    executionBackend: createOpenAIBackend({ apiKey: "sk-test", baseURL: fake.baseURL }),
  });
});

afterAll(async () => {
  await harness?.close();
  await fake?.close();
});

async function createWorker(clients: Clients): Promise<WorkerRef> {
  return (await clients.catalog.createWorker({ runtimeId: "rt-del" })).worker?.ref as WorkerRef;
}

describe("streams of a worker deleted while a run streams", () => {
  for (const protocol of PROTOCOLS) {
    it(`end with NOT_FOUND naming the worker, after the events up to the deletion (${protocol})`, async () => {
      const clients = harness.connect(protocol);
      const worker = await createWorker(clients);
      const watch = follow(clients.observation.watchWorker({ worker }));
      const input = follow(clients.interaction.streamInput({ worker, input: { text: "hi" } }));
      await eventually(() => sawText(watch) && sawText(input), 10_000, "the run's text on both streams");

      await clients.catalog.deleteWorker({ worker, force: true });

      for (const stream of [watch, input]) await expectEndedByDelete(stream, worker.workerId);
      const stopped = watch.events.some((event) => event.kind.case === "workerChanged" && event.kind.value.status === WorkerStatus.STOPPED);
      expect(stopped).toBe(true);
      expect(watch.events.at(-1)?.kind.case).toBe("workerChanged");

      // A new watch of the deleted worker: the same code and reason.
      const fresh = follow(clients.observation.watchWorker({ worker }));
      const refused = (await fresh.ended) as ConnectError;
      expect(refused.code).toBe(Code.NotFound);
      expect(refused.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.NOT_FOUND);
      expect(refused.findDetails(ErrorDetailSchema)[0]?.metadata).toEqual({ worker_id: worker.workerId });
    }, 30_000);
  }
});

describe("a watch of a worker deleted while the watcher has not read", () => {
  it("still hands over every event it held, then NOT_FOUND", async () => {
    const clients = harness.connect("grpc");
    const worker = await createWorker(clients);
    // In process, so nothing is taken from the subscription until the test reads: it holds the events at the deletion.
    const held = harness.runtime.watchWorker(create(WatchWorkerRequestSchema, { worker }), { signal: new AbortController().signal });
    expect((await held.next()).value?.snapshot).toBeDefined();
    const watch = follow(clients.observation.watchWorker({ worker }));
    await clients.interaction.sendInput({ worker, input: { text: "hi" } });
    await eventually(() => sawText(watch), 10_000, "the run's text");
    await clients.catalog.deleteWorker({ worker, force: true });
    await watch.ended;

    const late: WorkerEvent[] = [];
    const end = await (async () => {
      try {
        for await (const message of { [Symbol.asyncIterator]: () => held }) late.push(...message.events);
        return "clean";
      } catch (error) {
        return error;
      }
    })();
    expect(end).toBeInstanceOf(RuntimeError);
    expect([(end as RuntimeError).reason, (end as RuntimeError).message]).toEqual([
      ErrorReason.NOT_FOUND,
      `worker ${worker.workerId} was deleted`,
    ]);
    // The same events the watcher that kept reading got, the run's text among them.
    expect(late.map((event) => event.cursor || event.kind.case)).toEqual(watch.events.map((event) => event.cursor || event.kind.case));
    expect(late.some((event) => event.kind.case === "textDelta")).toBe(true);
  }, 30_000);
});

describe("a worker's watch when the runtime shuts down", () => {
  it("ends cleanly", async () => {
    const own = await startHarness({ runtimeId: "rt-closing" });
    const clients = own.connect("grpc");
    const worker = (await clients.catalog.createWorker({ runtimeId: "rt-closing" })).worker?.ref as WorkerRef;
    const watch = clients.observation.watchWorker({ worker })[Symbol.asyncIterator]();
    expect((await watch.next()).value?.snapshot).toBeDefined();
    const followed = follow({ [Symbol.asyncIterator]: () => watch });
    await own.runtime.close();
    expect(await followed.ended).toBe("clean");
    await own.close();
  }, 30_000);
});
