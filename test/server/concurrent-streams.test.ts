import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_MAX_CONCURRENT_STREAMS } from "../../src/server/server.js";
import { startHarness, type Harness } from "../support/harness.js";
import { advertisedStreamLimit } from "../support/http2-settings.js";

/**
 * SPEC §8: limits on concurrent streams. Each HTTP/2 connection may hold at
 * most `maxConcurrentStreams` open streams (SETTINGS_MAX_CONCURRENT_STREAMS);
 * past it a client's next call waits for one to end (nghttp2 holds it).
 */

let harness: Harness | undefined;

afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

describe("concurrent streams per connection", () => {
  it("advertises a finite default", async () => {
    harness = await startHarness();
    expect(DEFAULT_MAX_CONCURRENT_STREAMS).toBe(10_000);
    expect(await advertisedStreamLimit(harness.baseUrl)).toBe(DEFAULT_MAX_CONCURRENT_STREAMS);
  });

  it("holds a call past the limit until an open stream ends", async () => {
    harness = await startHarness({ maxConcurrentStreams: 2 });
    expect(await advertisedStreamLimit(harness.baseUrl)).toBe(2);
    const clients = harness.connect("grpc");
    const runtimeId = harness.runtime.runtimeId;
    const watches = [new AbortController(), new AbortController()];
    const opened = watches.map(async (controller) => {
      const stream = clients.observation.watchRuntime({ runtimeId }, { signal: controller.signal });
      const iterator = stream[Symbol.asyncIterator]();
      await iterator.next(); // the snapshot: the stream is open on the server
      return iterator;
    });
    const iterators = await Promise.all(opened);
    let answered = false;
    const third = clients.management.getRuntime({ runtimeId }).then((response) => {
      answered = true;
      return response;
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(answered).toBe(false);
    watches[0]?.abort();
    await iterators[0]?.next().catch(() => undefined);
    expect((await third).runtime?.runtimeId).toBe(runtimeId);
    watches[1]?.abort();
    await iterators[1]?.next().catch(() => undefined);
  });
});
