import { create } from "@bufbuild/protobuf";
import { TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { WorkerSession } from "./worker-session.js";

/**
 * The runtime's workers by id and in ListWorkers order (creation time, then
 * id). Page tokens hold the order key of the last worker returned, so pages
 * stay stable while workers are created and deleted, and across restarts.
 */
export class WorkerDirectory {
  private readonly byId = new Map<string, WorkerSession>();
  private readonly ordered: WorkerSession[] = [];
  /** The latest creation time handed out or restored, in nanoseconds since the epoch. */
  private lastCreatedNanos = 0n;

  get size(): number {
    return this.byId.size;
  }

  get(workerId: string): WorkerSession | undefined {
    return this.byId.get(workerId);
  }

  has(workerId: string): boolean {
    return this.byId.has(workerId);
  }

  values(): IterableIterator<WorkerSession> {
    return this.byId.values();
  }

  /**
   * A creation time strictly after every worker's so far: workers created
   * within one millisecond still list in the order they were created,
   * rather than by their random ids.
   */
  nextCreationTime(now: Date): Timestamp {
    const nanos = BigInt(now.getTime()) * 1_000_000n;
    this.lastCreatedNanos = nanos > this.lastCreatedNanos ? nanos : this.lastCreatedNanos + 1n;
    return create(TimestampSchema, {
      seconds: this.lastCreatedNanos / 1_000_000_000n,
      nanos: Number(this.lastCreatedNanos % 1_000_000_000n),
    });
  }

  add(session: WorkerSession): void {
    const created = session.worker.createdAt;
    const createdNanos = created ? created.seconds * 1_000_000_000n + BigInt(created.nanos) : 0n;
    if (createdNanos > this.lastCreatedNanos) this.lastCreatedNanos = createdNanos;
    this.byId.set(session.workerId, session);
    this.ordered.splice(this.firstAt(orderKey(session.worker), false), 0, session);
  }

  remove(session: WorkerSession): void {
    this.byId.delete(session.workerId);
    const index = this.ordered.indexOf(session);
    if (index >= 0) this.ordered.splice(index, 1);
  }

  /**
   * Up to `pageSize` workers after `afterKey` (undefined = from the start)
   * that pass `keep`; `more` says whether the walk stopped before the end.
   */
  page(afterKey: string | undefined, pageSize: number, keep: (worker: Worker) => boolean): { workers: Worker[]; more: boolean } {
    const workers: Worker[] = [];
    let index = afterKey === undefined ? 0 : this.firstAt(afterKey, true);
    for (; index < this.ordered.length && workers.length < pageSize; index++) {
      const worker = this.ordered[index]?.worker;
      if (worker && keep(worker)) workers.push(worker);
    }
    return { workers, more: workers.length === pageSize && index < this.ordered.length };
  }

  /** Index of the first worker whose key is >= key (or > key when `after`). */
  private firstAt(key: string, after: boolean): number {
    let low = 0;
    let high = this.ordered.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      const other = orderKey(this.ordered[mid]?.worker);
      if (other < key || (after && other === key)) low = mid + 1;
      else high = mid;
    }
    return low;
  }
}

/** Sort key of ListWorkers: creation time, then id (fixed width, so string order works). */
export function orderKey(worker: Worker | undefined): string {
  const seconds = (worker?.createdAt?.seconds ?? 0n).toString().padStart(14, "0");
  const nanos = String(worker?.createdAt?.nanos ?? 0).padStart(9, "0");
  return `${seconds}.${nanos}/${worker?.ref?.workerId ?? ""}`;
}
