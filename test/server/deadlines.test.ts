import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { PROTOCOLS, startHarness, type Harness } from "../support/harness.js";
import { holdOpen, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A stream whose deadline (`grpc-timeout`, `connect-timeout-ms`) runs out
 * must end with DEADLINE_EXCEEDED: a client that sees OK thinks the stream
 * ended normally (a watch caught up, a run finished) when it did not.
 */

/**
 * The deadline as a header only: the client sets no timer of its own, so
 * what the client sees is what the server sent (a client-side timer would
 * race the server's and hide an OK ending).
 */
const DEADLINE_HEADERS = { grpc: { "grpc-timeout": "300m" }, connect: { "connect-timeout-ms": "300" } } as const;

/** Drains a stream; returns how it ended. */
async function endOf(stream: AsyncIterable<unknown>): Promise<{ messages: number; error: ConnectError | undefined }> {
  let messages = 0;
  try {
    for await (const _ of stream) messages++;
    return { messages, error: undefined };
  } catch (error) {
    return { messages, error: ConnectError.from(error) };
  }
}

describe("stream deadlines", () => {
  let harness: Harness;
  const held = holdOpen("thinking");

  beforeAll(async () => {
    const backend = new ScriptedBackend(held.script);
    harness = await startHarness({ executionBackend: backend });
  });

  afterAll(async () => {
    held.release();
    await harness.close();
  });

  for (const protocol of PROTOCOLS) {
    it(`ends WatchWorker with DEADLINE_EXCEEDED over ${protocol}`, async () => {
      const clients = harness.connect(protocol, DEADLINE_HEADERS[protocol]);
      const worker = (await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId })).worker?.ref;
      const { messages, error } = await endOf(clients.observation.watchWorker({ worker }));
      expect(messages).toBeGreaterThan(0);
      expect(error?.code, String(error)).toBe(Code.DeadlineExceeded);
      expect(error?.findDetails(ErrorDetailSchema)[0]).toMatchObject({
        reason: ErrorReason.LIMIT_EXCEEDED,
        metadata: { limit: "deadline" },
      });
    });

    it(`ends WatchRuntime with DEADLINE_EXCEEDED over ${protocol}`, async () => {
      const clients = harness.connect(protocol, DEADLINE_HEADERS[protocol]);
      const { messages, error } = await endOf(clients.observation.watchRuntime({ runtimeId: harness.runtime.runtimeId }));
      expect(messages).toBeGreaterThan(0);
      expect(error?.code, String(error)).toBe(Code.DeadlineExceeded);
    });

    it(`ends StreamInput with DEADLINE_EXCEEDED over ${protocol} while its run is still going`, async () => {
      const clients = harness.connect(protocol, DEADLINE_HEADERS[protocol]);
      const worker = (await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId })).worker?.ref;
      const { messages, error } = await endOf(clients.interaction.streamInput({ worker, input: { text: "take long" } }));
      expect(messages).toBeGreaterThan(0);
      expect(error?.code, String(error)).toBe(Code.DeadlineExceeded);
      expect(error?.findDetails(ErrorDetailSchema)[0]).toMatchObject({
        reason: ErrorReason.LIMIT_EXCEEDED,
        metadata: { limit: "deadline" },
      });
    });
  }

  it("releases every subscription after the deadlines", async () => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(harness.runtime.stats().subscriptions).toBe(0);
  });
});

describe("a deadline over the server's maxTimeoutMs", () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness({});
  });

  afterAll(async () => {
    await harness.close();
  });

  const OVER = { grpc: { "grpc-timeout": "301S" }, connect: { "connect-timeout-ms": "300001" } } as const;

  for (const protocol of PROTOCOLS) {
    it(`is INVALID_ARGUMENT with LIMIT_EXCEEDED naming the bound over ${protocol}, unary and streaming`, async () => {
      const clients = harness.connect(protocol, OVER[protocol]);
      const calls: (() => Promise<unknown>)[] = [
        () => clients.management.getRuntime({}),
        async () => {
          for await (const message of clients.observation.watchRuntime({ runtimeId: harness.runtime.runtimeId })) return message;
          return undefined;
        },
      ];
      for (const call of calls) {
        const error = await call().then(
          () => undefined,
          (thrown: unknown) => ConnectError.from(thrown),
        );
        expect(error?.code, String(error)).toBe(Code.InvalidArgument);
        expect(error?.findDetails(ErrorDetailSchema)[0]).toMatchObject({
          reason: ErrorReason.LIMIT_EXCEEDED,
          metadata: { limit: "300000" },
        });
      }
      // At the bound is accepted.
      const atBound = harness.connect(protocol, protocol === "grpc" ? { "grpc-timeout": "300S" } : { "connect-timeout-ms": "300000" });
      expect((await atBound.management.getRuntime({})).runtime?.runtimeId).toBe(harness.runtime.runtimeId);
    });
  }
});
