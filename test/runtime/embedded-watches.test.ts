import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { createRuntime, RuntimeError, type Runtime } from "../../src/runtime/index.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * Watches on an embedded Runtime (memory store), as an embedder opens
 * them. Found by an audit embedding the Runtime in a Node program: a watch
 * opened after close() was served (a snapshot, then a heartbeat every
 * 15 s for ever, keeping the process alive), and a bad request threw at
 * call time from a method typed AsyncGenerator, missing code that catches
 * around next().
 */

let runtime: Runtime;
let abort: AbortController;

beforeEach(async () => {
  abort = new AbortController();
  runtime = await createRuntime({ executionBackend: new ScriptedBackend() });
});

afterEach(async () => {
  abort.abort();
  await runtime.close();
});

async function newWorkerRef(): Promise<{ runtimeId: string; workerId: string }> {
  const { worker } = await runtime.createWorker({
    runtimeId: runtime.runtimeId,
    profile: { source: { case: "builtin", value: "companion" } },
  });
  return { runtimeId: runtime.runtimeId, workerId: worker?.ref?.workerId ?? "" };
}

/** The first next() of `stream`: its error, or a failure naming what it yielded instead. */
async function firstError(stream: AsyncGenerator<unknown>): Promise<RuntimeError> {
  let first: IteratorResult<unknown>;
  try {
    first = await stream.next();
  } catch (error) {
    if (error instanceof RuntimeError) return error;
    throw error;
  }
  await stream.return(undefined);
  throw new Error(`expected the watch to fail, but it ${first.done ? "ended" : "yielded a message"}`);
}

describe("a watch opened after close()", () => {
  it("is refused as a request after close is (RUNTIME_DRAINING), holding nothing", async () => {
    const worker = await newWorkerRef();
    await runtime.close();
    const refusedInput = await runtime.sendInput({ worker, input: { text: "hi" } }).catch((error: unknown) => error);
    expect(refusedInput).toBeInstanceOf(RuntimeError);
    const expected = { code: (refusedInput as RuntimeError).code, reason: (refusedInput as RuntimeError).reason };
    expect(expected).toEqual({ code: Code.Unavailable, reason: ErrorReason.RUNTIME_DRAINING });

    const workerWatch = await firstError(runtime.watchWorker({ worker }, { signal: abort.signal }));
    expect({ code: workerWatch.code, reason: workerWatch.reason }).toEqual(expected);
    const runtimeWatch = await firstError(runtime.watchRuntime({ runtimeId: runtime.runtimeId }, { signal: abort.signal }));
    expect({ code: runtimeWatch.code, reason: runtimeWatch.reason }).toEqual(expected);
    const inputStream = await firstError(runtime.streamInput({ worker, input: { text: "hi" } }, { signal: abort.signal }));
    expect({ code: inputStream.code, reason: inputStream.reason }).toEqual(expected);
    expect(runtime.stats().subscriptions).toBe(0);
  });

  it("is still served while the runtime drains, and ended by close", async () => {
    const worker = await newWorkerRef();
    await runtime.drain(0);
    const stream = runtime.watchWorker({ worker }, { signal: abort.signal });
    expect((await stream.next()).value?.snapshot).toBeDefined();
    const closing = runtime.close();
    for (;;) if ((await stream.next()).done) break;
    await closing;
  });
});

describe("a bad watch request", () => {
  it("fails at the first next(), not at the call, as an async generator does", async () => {
    const worker = await newWorkerRef();
    const calls: Array<[string, () => AsyncGenerator<unknown>, string]> = [
      ["watchRuntime without runtime_id", () => runtime.watchRuntime({}, { signal: abort.signal }), "runtime_id"],
      ["watchWorker without worker", () => runtime.watchWorker({}, { signal: abort.signal }), "worker"],
      [
        "watchWorker with a bad cursor",
        () => runtime.watchWorker({ worker, afterCursor: "not a cursor" }, { signal: abort.signal }),
        "after_cursor",
      ],
      ["watchWorker with no object", () => runtime.watchWorker(42 as never, { signal: abort.signal }), "request"],
    ];
    for (const [what, call, field] of calls) {
      let stream: AsyncGenerator<unknown> | undefined;
      expect(() => {
        stream = call();
      }, what).not.toThrow();
      const error = await firstError(stream as AsyncGenerator<unknown>);
      expect({ what, code: error.code, field: error.metadata.field }).toEqual({ what, code: Code.InvalidArgument, field });
    }
    expect(runtime.stats().subscriptions).toBe(0);
  });

  it("a watch returned before its first next() never opens", async () => {
    const worker = await newWorkerRef();
    const stream = runtime.watchWorker({ worker }, { signal: abort.signal });
    await stream.return(undefined);
    expect(runtime.stats().subscriptions).toBe(0);
    expect((await stream.next()).done).toBe(true);
  });
});
