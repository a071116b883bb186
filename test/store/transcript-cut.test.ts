import path from "node:path";
import { describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { damageActiveSegmentMiddle } from "../support/damaged-segment.js";
import { useDamageableRuntime } from "../support/damageable-runtime.js";
import { PROTOCOLS, runToEnd } from "../support/harness.js";

/**
 * A worker whose transcript the open found damaged in the middle is served
 * FAILED (quarantined) with the entries before the damage readable. Its
 * ReadTranscript answered those entries with has_more false and last_seq
 * at the damage, and nothing said the rest could not be read: a user took
 * it for the whole conversation. Every answer now carries `cut`: where the
 * readable part ends, why (WORKER_FAILED) and what to do, in plain words.
 */
const stored = useDamageableRuntime("wr-transcript-cut-", { runtimeId: "rc" });

describe("a transcript the open found damaged in the middle", () => {
  it("reads up to the damage, and every answer says where the readable part ends, why and what to do", async () => {
    const first = await stored.serve();
    const clients = first.connect("grpc");
    const worker = (await clients.catalog.createWorker({ runtimeId: "rc" })).worker?.ref as WorkerRef;
    const healthy = (await clients.catalog.createWorker({ runtimeId: "rc" })).worker?.ref as WorkerRef;
    for (let i = 0; i < 4; i++) expect((await runToEnd(clients, worker, `message ${i}`))?.status).toBe(RunStatus.COMPLETED);
    expect((await runToEnd(clients, healthy, "hello"))?.status).toBe(RunStatus.COMPLETED);
    const written = (await clients.observation.readTranscript({ worker })).lastSeq;
    await first.close();
    await damageActiveSegmentMiddle(path.join(stored.dir, "workers", worker.workerId));

    const second = await stored.serve();
    try {
      for (const protocol of PROTOCOLS) {
        const again = second.connect(protocol);
        const tail = await again.observation.readTranscript({ worker });
        const readable = tail.lastSeq;
        expect(readable).toBeGreaterThan(0n);
        expect(readable).toBeLessThan(written);
        expect(tail.entries.map((e) => e.seq)).toEqual(Array.from({ length: Number(readable) }, (_, i) => BigInt(i + 1)));
        expect(tail.hasMore).toBe(false);
        expect(tail.cut?.readableThroughSeq).toBe(readable);
        expect(tail.cut?.reason).toBe(ErrorReason.WORKER_FAILED);
        expect(tail.cut?.message).toMatch(/damaged/);
        expect(tail.cut?.message).toMatch(/backup|delete the worker/);
        expect(tail.cut?.message).not.toMatch(/\.log|transcript\/|workers\//);
        expect(tail.cut?.message).not.toContain(stored.dir);
        // Whatever the position: a forward page from the start says it too.
        const page = await again.observation.readTranscript({ worker, position: { case: "afterSeq", value: 0n }, limit: 1 });
        expect([page.entries.length, page.hasMore, page.cut?.readableThroughSeq]).toEqual([1, true, readable]);
        const past = await again.observation.readTranscript({ worker, position: { case: "afterSeq", value: readable } });
        expect([past.entries.length, past.hasMore, past.cut?.readableThroughSeq]).toEqual([0, false, readable]);
        // A whole transcript carries no cut.
        const whole = await again.observation.readTranscript({ worker: healthy });
        expect(whole.entries.length).toBeGreaterThan(0);
        expect(whole.cut).toBeUndefined();

        // GetWorker and ListWorkers say the worker is quarantined.
        const got = (await again.catalog.getWorker({ worker })).worker;
        expect(got?.status).toBe(WorkerStatus.FAILED);
        expect(got?.failureMessage).toMatch(/stored state is damaged/);
        const listed = (await again.catalog.listWorkers({ runtimeId: "rc" })).workers.find((w) => w.ref?.workerId === worker.workerId);
        expect([listed?.status, listed?.failureMessage]).toEqual([WorkerStatus.FAILED, got?.failureMessage]);
      }
    } finally {
      await second.close();
    }
  });
});
