import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { createPinoLogger } from "../../src/cli/pino-logger.js";
import { CloseTimeoutError, createMemoryStore, createRuntime, RuntimeError, type RuntimeStore } from "../../src/runtime/index.js";
import { logCapture } from "../support/log-lines.js";

/**
 * Closing a runtime waits for the writes the core started, then for the
 * store's close; a store whose write never settles (a disk that hangs) held
 * close() forever, and with it a `serve` process's SIGTERM (shutdown.test.ts
 * shows the process). Past `limits.cancelGraceMs + limits.flushTimeoutMs` close() rejects with a
 * typed CloseTimeoutError naming what did not settle, and logs it.
 */

const WRITES = ["putWorker", "putRun", "appendTranscript", "appendEvents", "appendRuntimeEvents", "deleteWorker"] as const;

/** A memory store whose writes, once `hang()` is called, never settle (nor does its close); `hangClose()` hangs only its close. */
function hangingStore(): { store: RuntimeStore; hang: () => void; hangClose: () => void } {
  const inner = createMemoryStore();
  let hanging = false;
  let closeHangs = false;
  const overrides: Record<string, unknown> = {
    close: () => (hanging || closeHangs ? new Promise<void>(() => undefined) : inner.close()),
  };
  for (const name of WRITES) {
    const write = (inner[name] as (...args: unknown[]) => Promise<void>).bind(inner);
    overrides[name] = (...args: unknown[]) => (hanging ? new Promise<void>(() => undefined) : write(...args));
  }
  return {
    store: Object.assign(Object.create(inner) as RuntimeStore, overrides),
    hang: () => (hanging = true),
    hangClose: () => (closeHangs = true),
  };
}

describe("closing a runtime whose store hangs", () => {
  it("rejects past its bound with a typed error naming the writes and workers that did not settle, and logs them", async () => {
    const capture = logCapture();
    const logger = createPinoLogger({ level: "info", payloads: false, destination: capture.destination });
    const { store, hang } = hangingStore();
    const runtime = await createRuntime({ store, logger, limits: { cancelGraceMs: 100, flushTimeoutMs: 200 } });
    const created = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
    const worker = created.worker?.ref;
    const workerId = worker?.workerId ?? "";

    hang();
    // StopWorker writes the worker's snapshot: it never lands.
    const stopping = runtime.stopWorker({ worker });
    stopping.catch(() => undefined);

    const error = await runtime.close().then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(CloseTimeoutError);
    expect(error).toBeInstanceOf(RuntimeError);
    const timeout = error as CloseTimeoutError;
    expect(timeout.code).toBe(Code.DeadlineExceeded);
    expect(timeout.reason).toBe(ErrorReason.STORE_UNAVAILABLE);
    expect(timeout.unsettled).toContain(`putWorker (worker ${workerId})`);
    expect(timeout.message).toContain(`putWorker (worker ${workerId})`);
    expect(timeout.message).toContain("may not be on disk");
    // Streams are ended all the same, so a server can close its connections.
    expect(runtime.closed).toBe(true);
    const line = capture.lines.find((l) => l.message === "runtime close timed out");
    expect(line?.level).toBe("error");
    expect(line?.["unsettled"]).toEqual(timeout.unsettled);
    expect(line?.["timeout_ms"]).toBe(300);
  });

  it("rejects the same way when only the store's own close hangs, naming it", async () => {
    const { store, hangClose } = hangingStore();
    const runtime = await createRuntime({ store, limits: { cancelGraceMs: 100, flushTimeoutMs: 200 } });
    hangClose();
    await expect(runtime.close()).rejects.toMatchObject({ name: "CloseTimeoutError", unsettled: ["store close"] });
  });

  it("resolves as before when every write settles", async () => {
    const { store } = hangingStore();
    const runtime = await createRuntime({ store, limits: { cancelGraceMs: 100, flushTimeoutMs: 200 } });
    const created = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
    await runtime.stopWorker({ worker: created.worker?.ref });
    await expect(runtime.close()).resolves.toBeUndefined();
  });
});
