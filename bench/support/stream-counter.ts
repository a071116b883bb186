/**
 * Consumes one server stream in the background and counts what arrives, so
 * a bench can wait for "every subscriber has N items" without buffering the
 * messages themselves. Stream errors (other than our own abort) fail every
 * pending wait instead of hanging the bench.
 */
export class StreamCounter<M> {
  /** Items received so far. */
  count = 0;
  /** Resolves when the first message (snapshot / headers) has arrived. */
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private failure: unknown;
  private waiters: { target: number; resolve: () => void; reject: (error: unknown) => void }[] = [];
  private readonly abort = new AbortController();
  private readonly finished: Promise<void>;

  /**
   * @param open starts the stream with the given signal
   * @param itemsIn how many counted items one message holds
   * @param onItems called with the arrival time of every message holding items
   */
  constructor(
    open: (signal: AbortSignal) => AsyncIterable<M>,
    private readonly itemsIn: (message: M) => number,
    private readonly onItems?: (arrivedAt: number) => void,
  ) {
    this.ready = new Promise((resolve) => (this.markReady = resolve));
    this.finished = this.consume(open(this.abort.signal));
  }

  /**
   * Resolves once `target` items have arrived in total; rejects after
   * `timeoutMs` so a stuck stream fails the bench instead of hanging it.
   */
  reach(target: number, timeoutMs = 60_000): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.count >= target) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`stream stuck at ${this.count} of ${target} items after ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        target,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Ends the stream and waits for the consumer to stop. */
  async close(): Promise<void> {
    this.abort.abort();
    await this.finished;
  }

  private async consume(stream: AsyncIterable<M>): Promise<void> {
    try {
      for await (const message of stream) {
        this.markReady();
        const items = this.itemsIn(message);
        if (items === 0) continue;
        this.count += items;
        this.onItems?.(performance.now());
        if (this.waiters.length > 0) this.settle();
      }
      if (!this.abort.signal.aborted) throw new Error("stream ended before the bench was done");
    } catch (error) {
      if (this.abort.signal.aborted) return;
      this.failure = error;
      for (const waiter of this.waiters) waiter.reject(error);
      this.waiters = [];
    }
  }

  private settle(): void {
    const due = this.waiters.filter((w) => this.count >= w.target);
    this.waiters = this.waiters.filter((w) => this.count < w.target);
    for (const waiter of due) waiter.resolve();
  }
}
