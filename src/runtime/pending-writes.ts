import type { RuntimeStore } from "./store.js";

/** The most writes a close timeout names; the rest are counted. */
const MAX_NAMED = 20;

/**
 * The store writes in flight, by what they write, so that a close that
 * passes its bound (runtime-shutdown.ts) can say which writes, for which
 * workers, did not settle: a store that hangs (a disk that stopped
 * answering) otherwise leaves only "it hung". The runtime uses the store
 * {@link PendingWrites.track} returns in place of the one it was given.
 */
export class PendingWrites {
  private readonly pending = new Map<Promise<unknown>, string>();

  /** `store`, its writes (and its close) kept here until they settle; reads pass straight through. */
  track(store: RuntimeStore): RuntimeStore {
    const probeWrite = store.probeWrite?.bind(store);
    return {
      kind: store.kind,
      open: (init) => store.open(init),
      putWorker: (record) => this.watch(`putWorker (worker ${record.worker?.ref?.workerId ?? ""})`, store.putWorker(record)),
      deleteWorker: (workerId) => this.watch(`deleteWorker (worker ${workerId})`, store.deleteWorker(workerId)),
      putRun: (workerId, run, init) => this.watch(`putRun (worker ${workerId}, run ${run.runId})`, store.putRun(workerId, run, init)),
      getRun: (workerId, runId) => store.getRun(workerId, runId),
      listRuns: (workerId, beforeOrdinal, limit) => store.listRuns(workerId, beforeOrdinal, limit),
      appendTranscript: (workerId, entries) =>
        this.watch(`appendTranscript (worker ${workerId})`, store.appendTranscript(workerId, entries)),
      readTranscript: (workerId, range, limit) => store.readTranscript(workerId, range, limit),
      appendEvents: (workerId, events) => this.watch(`appendEvents (worker ${workerId})`, store.appendEvents(workerId, events)),
      readEvents: (workerId, afterSeq, limit) => store.readEvents(workerId, afterSeq, limit),
      earliestEventSeq: (workerId) => store.earliestEventSeq(workerId),
      appendRuntimeEvents: (events) => this.watch("appendRuntimeEvents (runtime events)", store.appendRuntimeEvents(events)),
      readRuntimeEvents: (afterSeq, limit) => store.readRuntimeEvents(afterSeq, limit),
      earliestRuntimeEventSeq: () => store.earliestRuntimeEventSeq(),
      putConfigBundle: (bundle) => this.watch(`putConfigBundle (bundle ${bundle.bundleId})`, store.putConfigBundle(bundle)),
      ...(probeWrite ? { probeWrite: () => this.watch("probeWrite", probeWrite()) } : {}),
      close: () => this.watch("store close", store.close()),
    };
  }

  /**
   * What has not settled, oldest first, each named once with how many
   * there are ("appendEvents (worker w1) x3"); past {@link MAX_NAMED}
   * names, the rest are counted.
   */
  unsettled(): string[] {
    const counts = new Map<string, number>();
    for (const label of this.pending.values()) counts.set(label, (counts.get(label) ?? 0) + 1);
    const named = [...counts].map(([label, count]) => (count > 1 ? `${label} x${count}` : label));
    if (named.length <= MAX_NAMED) return named;
    return [...named.slice(0, MAX_NAMED), `and ${named.length - MAX_NAMED} more`];
  }

  private watch<T>(label: string, write: Promise<T>): Promise<T> {
    this.pending.set(write, label);
    const forget = (): void => {
      this.pending.delete(write);
    };
    write.then(forget, forget);
    return write;
  }
}
