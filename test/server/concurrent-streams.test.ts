import { ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_MAX_CONCURRENT_STREAMS } from "../../src/server/server.js";
import { answerOrError } from "../support/errors.js";
import { eventually, startHarness, type Harness } from "../support/harness.js";
import { advertisedStreamLimit } from "../support/http2-settings.js";

/**
 * SPEC §8: limits on concurrent streams. Each HTTP/2 connection may hold at
 * most `maxConcurrentStreams` open streams (SETTINGS_MAX_CONCURRENT_STREAMS);
 * past it a client's next call is not served until one ends (the client's
 * HTTP/2 stack holds it; Node 24's may send it as a stream ends, too early,
 * and the server refuses it with ENHANCE_YOUR_CALM).
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

  it("serves no call past the limit until an open stream ends", async () => {
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
    // While the limit is reached, a call past it is not served (its client's HTTP/2 stack holds it).
    let answered = false;
    const third = answerOrError(clients.management.getRuntime({ runtimeId })).then((answer) => {
      answered = true;
      return answer;
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(answered).toBe(false);
    watches[0]?.abort();
    await iterators[0]?.next().catch(() => undefined);
    // Once a stream has ended it is served; Node 24's client may send it while the server still counts the
    // ended stream, which the server then refuses (ENHANCE_YOUR_CALM): a call made after that is served.
    const held = await third;
    if (held instanceof ConnectError) {
      expect(held.rawMessage).toContain("NGHTTP2_ENHANCE_YOUR_CALM");
      await eventually(
        async () => (await answerOrError(clients.management.getRuntime({ runtimeId }))) instanceof ConnectError === false,
        5_000,
        "a call served once a stream ended",
      );
    } else {
      expect(held.runtime?.runtimeId).toBe(runtimeId);
    }
    watches[1]?.abort();
    await iterators[1]?.next().catch(() => undefined);
  });
});
