import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../../support/harness.js";
import { serveRuntime, startClient, type ServedRuntime } from "./client-support.js";

/**
 * A worker deleted while `watch` shows it: the runtime ends the watch
 * (cleanly, as it ends every watch when it shuts down), and the client
 * tells the two apart at once instead of taking the deletion for a lost
 * connection: it says the worker was deleted and exits 5 (NOT_FOUND),
 * with no "reconnecting" on the way. It used to print "watch
 * disconnected ...; reconnecting", wait, and only then fail with the
 * NOT_FOUND of the reconnect.
 */

let rt: ServedRuntime;

beforeAll(async () => {
  rt = await serveRuntime({ runtimeId: "rt-deleted" });
});

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
      for (const workerId of [textId, jsonId]) {
        await rt.clients.catalog.deleteWorker({ worker: { runtimeId: rt.runtimeId, workerId }, force: true });
      }
      expect(await text.exited).toEqual({ code: 5, signal: null });
      expect(text.stderr()).toBe(`worker-runtime: worker ${textId} was deleted (reason: NOT_FOUND)\n`);
      expect(await json.exited).toEqual({ code: 5, signal: null });
      expect(JSON.parse(json.stderr())).toEqual({
        error: { code: "NotFound", reason: "NOT_FOUND", message: `worker ${jsonId} was deleted` },
      });
    } finally {
      text.kill();
      json.kill();
    }
  }, 120_000);
});
