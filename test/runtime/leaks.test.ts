import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { clientsFor, eventually, makeTransport, startHarness, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

describe("watch subscriptions", () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness({ executionBackend: new ScriptedBackend() });
  });
  afterAll(async () => {
    await harness.close();
  });

  it("are all released after 50 watching clients abort", async () => {
    const clients = harness.connect("grpc");
    const { worker } = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
    const before = harness.runtime.stats().subscriptions;
    const watchers: Array<{ stop: () => void; done: Promise<void> }> = [];
    for (let i = 0; i < 50; i++) {
      // Half cancel their call; half drop their whole HTTP/2 connection.
      const protocol = i % 2 === 0 ? "grpc" : "connect";
      const session = new Http2SessionManager(harness.baseUrl);
      const client = clientsFor(makeTransport(protocol, harness.baseUrl, session));
      const abort = new AbortController();
      const done = (async () => {
        try {
          for await (const _ of client.observation.watchWorker({ worker: worker?.ref }, { signal: abort.signal })) {
            // keep reading until aborted
          }
        } catch {
          // the abort ends the call with an error on the client side
        }
      })();
      const mode = i % 4;
      watchers.push({
        stop: () => (mode < 2 ? abort.abort() : session.abort()),
        done,
      });
    }
    await eventually(() => harness.runtime.stats().subscriptions === before + 50, 30_000, "50 subscriptions");
    for (const watcher of watchers) watcher.stop();
    // A leak never releases; how fast a release is belongs to the benches. The
    // bound only ends the wait, and is wide because under a loaded machine the
    // server may read the 50 resets and closes seconds after they were sent.
    await eventually(() => harness.runtime.stats().subscriptions === before, 30_000, "subscriptions released");
    expect(harness.runtime.stats().subscriptions).toBe(before);
    await Promise.all(watchers.map((w) => w.done));
  });
});
