import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../../support/harness.js";
import { parseLogLines } from "../../support/log-lines.js";
import { chunk } from "../../support/openai-chunks.js";
import { serveRuntime, startClient, type ServedRuntime } from "./client-support.js";

/**
 * A worker deleted while `watch` shows it: the runtime ends the watch with
 * NOT_FOUND ("worker W was deleted"), and the client says the worker was
 * deleted and exits 5 (NOT_FOUND) at once, with no "reconnecting" on the
 * way and no question to the runtime: its RPC log (debug level) shows no
 * GetWorker after the deletion. It used to print "watch disconnected ...;
 * reconnecting", wait, and only then fail with the NOT_FOUND of the
 * reconnect; then, while the runtime ended the watch cleanly as it does
 * when it shuts down, it asked GetWorker which of the two it was.
 */

const GET_WORKER = "worker_runtime.v1.WorkerCatalog/GetWorker";
const GET_RUNTIME = "worker_runtime.v1.RuntimeManagement/GetRuntime";

let rt: ServedRuntime;

beforeAll(async () => {
  rt = await serveRuntime({ runtimeId: "rt-deleted", env: { WORKER_RUNTIME_LOG_LEVEL: "debug" } });
});

/** How many calls of `method` the runtime has logged as ended (complete lines only: the last may be half written). */
function logged(method: string): number {
  const stderr = rt.process.stderr();
  return parseLogLines(stderr.slice(0, stderr.lastIndexOf("\n") + 1)).filter(
    (line) => line["rpc_method"] === method && (line.message === "rpc completed" || line.message === "rpc failed"),
  ).length;
}

afterAll(async () => {
  await rt?.close();
});

async function createWorker(): Promise<string> {
  const { worker } = await rt.clients.catalog.createWorker({
    runtimeId: rt.runtimeId,
    profile: { source: { case: "builtin", value: "companion" } },
  });
  return worker?.ref?.workerId ?? "";
}

describe("watch of a worker that is deleted", () => {
  it("says the worker was deleted and exits 5 at once, in text and in JSON", async () => {
    const [textId, jsonId] = [await createWorker(), await createWorker()];
    const text = startClient(["watch", textId], { server: rt.url });
    const json = startClient(["watch", jsonId, "--output", "json"], { server: rt.url });
    try {
      await eventually(() => text.stdout().includes("IDLE") && json.stdout().includes('"snapshot"'), 60_000, "both snapshots");
      const getWorkerBefore = logged(GET_WORKER);
      for (const workerId of [textId, jsonId]) {
        await rt.clients.catalog.deleteWorker({ worker: { runtimeId: rt.runtimeId, workerId }, force: true });
      }
      expect(await text.exited).toEqual({ code: 5, signal: null });
      expect(text.stderr()).toBe(`worker-runtime: worker ${textId} was deleted (reason: NOT_FOUND)\n`);
      expect(await json.exited).toEqual({ code: 5, signal: null });
      expect(JSON.parse(json.stderr())).toEqual({
        error: { code: "NotFound", reason: "NOT_FOUND", message: `worker ${jsonId} was deleted` },
      });
      // A call made after both exits is logged after anything they asked: once it is there, so is every GetWorker of theirs.
      const getRuntimeBefore = logged(GET_RUNTIME);
      await rt.clients.management.getRuntime({});
      await eventually(() => logged(GET_RUNTIME) > getRuntimeBefore, 30_000, "the marker call in the runtime's log");
      expect(logged(GET_WORKER)).toBe(getWorkerBefore);
    } finally {
      text.kill();
      json.kill();
    }
  }, 120_000);
});

describe("send to a worker deleted while its reply streams", () => {
  it("shows the reply so far, then says the worker was deleted and exits 5", async () => {
    const workerId = await createWorker();
    rt.fake.enqueue({ kind: "stream", chunks: [chunk({ role: "assistant", content: "" }), chunk({ content: "Hello" })], end: "hang" });
    const send = startClient(["send", workerId, "hi"], { server: rt.url });
    try {
      await eventually(() => send.stdout().includes("Hello"), 60_000, "the reply so far");
      await rt.clients.catalog.deleteWorker({ worker: { runtimeId: rt.runtimeId, workerId }, force: true });
      expect(await send.exited).toEqual({ code: 5, signal: null });
      expect(send.stderr()).toBe(`worker-runtime: worker ${workerId} was deleted (reason: NOT_FOUND)\n`);
    } finally {
      send.kill();
    }
  }, 120_000);
});

describe("chat with a worker deleted while its reply streams", () => {
  it("says the worker was deleted and exits 5, sending none of the lines after", async () => {
    const workerId = await createWorker();
    rt.fake.enqueue({ kind: "stream", chunks: [chunk({ role: "assistant", content: "" }), chunk({ content: "Hello" })], end: "hang" });
    const requestsBefore = rt.fake.requests.length;
    const chat = startClient(["chat", workerId], { server: rt.url, input: "hi\nare you there?\n" });
    try {
      await eventually(() => chat.stdout().includes("Hello"), 60_000, "the reply so far");
      await rt.clients.catalog.deleteWorker({ worker: { runtimeId: rt.runtimeId, workerId }, force: true });
      expect(await chat.exited).toEqual({ code: 5, signal: null });
      expect(chat.stderr()).toBe(`worker-runtime: worker ${workerId} was deleted (reason: NOT_FOUND)\n`);
      expect(rt.fake.requests.length).toBe(requestsBefore + 1);
    } finally {
      chat.kill();
    }
  }, 120_000);
});
