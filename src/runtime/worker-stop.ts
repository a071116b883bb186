import { WorkerStatus, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { WorkerJournal } from "./worker-journal.js";

/**
 * Stopping a worker, once: no more input, queued and active runs cancelled,
 * the STOPPED worker written. A second StopWorker or a DeleteWorker waits
 * for the same stop. A stop whose write the store refused (a full disk) is
 * not kept as the answer: its caller was told to retry, so the next stop
 * writes the STOPPED worker again (the worker takes no input meanwhile),
 * and cancels the runs again until one stop has cancelled them all: a
 * failed record of a run's end must not leave the active run streaming on
 * a STOPPED worker.
 */
export class WorkerStop {
  private stopping: Promise<void> | undefined;
  private unsaved = false;
  private cancelled = false;

  constructor(
    private readonly worker: Worker,
    private readonly cancelEverything: () => Promise<void>,
    private readonly journal: Pick<WorkerJournal, "saveWorker">,
  ) {}

  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    const status = this.worker.status;
    if (status === WorkerStatus.FAILED || (status === WorkerStatus.STOPPED && !this.unsaved)) return Promise.resolve();
    this.worker.status = WorkerStatus.STOPPED;
    const stopping = (async () => {
      if (!this.cancelled) await this.cancelEverything();
      this.cancelled = true;
      await this.journal.saveWorker();
      this.unsaved = false;
    })();
    this.stopping = stopping;
    stopping.catch(() => {
      this.stopping = undefined;
      this.unsaved = true;
    });
    return stopping;
  }
}
