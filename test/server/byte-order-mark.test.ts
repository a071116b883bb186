import { create } from "@bufbuild/protobuf";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { CreateWorkerRequestSchema, GetWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { startHarness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A string field that begins with U+FEFF keeps it through every binary
 * decode — the server reading gRPC, the file store reading its records back
 * after a restart — as it already did through JSON.
 */

const NAME = "\ufeffnamed with a byte-order mark";

describe("a leading U+FEFF in a string field", () => {
  it("survives a gRPC request (binary) and is read back over Connect JSON", async () => {
    const harness = await startHarness({ executionBackend: new ScriptedBackend() });
    try {
      const created = await harness.connect("grpc").catalog.createWorker({ runtimeId: harness.runtime.runtimeId, displayName: NAME });
      const response = await fetch(`${harness.http1Url}/worker_runtime.v1.WorkerCatalog/GetWorker`, {
        method: "POST",
        headers: { "content-type": "application/json", "connect-protocol-version": "1" },
        body: JSON.stringify({ worker: { runtimeId: harness.runtime.runtimeId, workerId: created.worker?.ref?.workerId } }),
      });
      const json = (await response.json()) as { worker?: { displayName?: string } };
      expect(json.worker?.displayName).toBe(NAME);
    } finally {
      await harness.close();
    }
  });

  it("survives the file store across a restart", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "wr-bom-"));
    try {
      const first = await createRuntime({ logger: silentLogger, store: createFileStore({ dataDir }) });
      const created = await first.createWorker(create(CreateWorkerRequestSchema, { runtimeId: first.runtimeId, displayName: NAME }));
      const ref = created.worker?.ref;
      await first.close();
      const second = await createRuntime({ logger: silentLogger, store: createFileStore({ dataDir }) });
      try {
        expect(second.getWorker(create(GetWorkerRequestSchema, { worker: ref })).displayName).toBe(NAME);
      } finally {
        await second.close();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
