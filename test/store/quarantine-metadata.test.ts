import { mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { type Harness, startHarness } from "../support/harness.js";

/**
 * A worker whose snapshot cannot be read is quarantined, and used to be
 * listed with nothing but its id: its display name, labels, intent and
 * creation time, which its users chose or rely on to recognise it, were
 * gone, and it was listed after every healthy worker whatever its age. What
 * a worker is given at creation is now also kept in a record written once,
 * when it is created, and never rewritten; a quarantined worker is restored
 * from it (FAILED), in its place in creation order.
 */
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-quarantine-metadata-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function serve(): Promise<Harness> {
  return startHarness({ runtimeId: "rm", store: createFileStore({ dataDir: dir }) });
}

/** What a user chose or relies on to recognise a worker: the same before and after its quarantine. */
function identity(worker: Worker | undefined) {
  return {
    ref: worker?.ref,
    displayName: worker?.displayName,
    labels: worker?.labels,
    intent: worker?.intent,
    createdAt: worker?.createdAt,
    profile: worker?.profile,
  };
}

describe("a worker whose snapshot is damaged", () => {
  it("is listed FAILED with the display name, labels, intent and creation time it was created with, in its place", async () => {
    const first = await serve();
    const catalog = first.connect("grpc").catalog;
    const created: Worker[] = [];
    for (const name of ["Alpha", "Beta", "Gamma"]) {
      const { worker } = await catalog.createWorker({
        runtimeId: "rm",
        displayName: name,
        labels: { team: name.toLowerCase(), tier: "gold" },
        intent: `help with ${name}`,
      });
      if (worker) created.push(worker);
    }
    await first.close();
    const [alpha, beta, gamma] = created;
    await writeFile(path.join(dir, "workers", beta?.ref?.workerId ?? "", "worker.snapshot"), "not a snapshot");
    await unlink(path.join(dir, "workers", gamma?.ref?.workerId ?? "", "worker.snapshot"));

    const second = await serve();
    try {
      const clients = second.connect("grpc");
      const listed = (await clients.catalog.listWorkers({ runtimeId: "rm" })).workers;
      expect(listed.map((w) => w.displayName)).toEqual(["Alpha", "Beta", "Gamma"]);
      expect(listed.map((w) => w.status)).toEqual([WorkerStatus.IDLE, WorkerStatus.FAILED, WorkerStatus.FAILED]);
      expect(listed.map(identity)).toEqual([alpha, beta, gamma].map(identity));
      const got = (await clients.catalog.getWorker({ worker: beta?.ref })).worker;
      expect(identity(got)).toEqual(identity(beta));
    } finally {
      await second.close();
    }
  });
});
