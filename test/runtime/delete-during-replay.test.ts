import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import {
  CreateWorkerRequestSchema,
  DeleteWorkerRequestSchema,
  StopWorkerRequestSchema,
} from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WatchWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createRuntime, RuntimeError } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";

/**
 * A watch resumed from an older cursor replays stored events after its
 * snapshot. A delete of its worker in the middle of that replay ends it with
 * the delete's NOT_FOUND, as every other stream of a deleted worker ends,
 * not with the store's "unknown worker" (INTERNAL over the wire) or a gap
 * read as an expired cursor.
 */
describe.each(["memory", "file"] as const)("a watch replaying when its worker is deleted (%s store)", (kind) => {
  it("ends with the delete's NOT_FOUND", async () => {
    const dataDir = kind === "file" ? mkdtempSync(join(tmpdir(), "replay-delete-")) : undefined;
    const runtime = await createRuntime(dataDir ? { store: createFileStore({ dataDir }) } : {});
    try {
      const { worker } = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
      const ref = worker!.ref!;
      const opened = new AbortController();
      const first = await runtime
        .watchWorker(create(WatchWorkerRequestSchema, { worker: ref }), { signal: opened.signal })
        [Symbol.asyncIterator]()
        .next();
      const cursor = first.value?.snapshot?.cursor ?? "";
      opened.abort();
      // Events after the cursor, for a resumed watch to replay from the store.
      await runtime.stopWorker(create(StopWorkerRequestSchema, { worker: ref }));
      const resumed = runtime
        .watchWorker(create(WatchWorkerRequestSchema, { worker: ref, afterCursor: cursor }), {
          signal: new AbortController().signal,
        })
        [Symbol.asyncIterator]();
      expect((await resumed.next()).value?.snapshot).toBeDefined();
      await runtime.deleteWorker(create(DeleteWorkerRequestSchema, { worker: ref }));
      const ended = await (async () => {
        for (;;) if ((await resumed.next()).done) return "a clean end";
      })().catch((error: unknown) => error);
      expect(ended).toBeInstanceOf(RuntimeError);
      expect(ended).toMatchObject({ code: Code.NotFound, reason: ErrorReason.NOT_FOUND, metadata: { worker_id: ref.workerId } });
    } finally {
      await runtime.close();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
