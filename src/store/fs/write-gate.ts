import { StoreWriteError } from "../../runtime/index.js";

/**
 * Admits the file store's writes until close, and tracks the ones that no
 * log or worker chain waits for (probe and config bundle writes). After
 * close the data dir is no longer locked, so a write then could land in a
 * directory another process owns, or one being removed (a test's temp dir
 * cleanup met a probe write still in flight): every write is refused
 * instead, and close resolves only once the tracked ones settled.
 */
export class WriteGate {
  private closed = false;
  private readonly inFlight = new Set<Promise<unknown>>();

  /** Throws the contract's write failure once close has begun. */
  check(): void {
    if (this.closed) throw new StoreWriteError("file store is closed");
  }

  /** Runs `write` if still open, keeping it in flight for {@link close}. */
  run<T>(write: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new StoreWriteError("file store is closed"));
    const pending = write();
    const settled = pending.then(
      () => undefined,
      () => undefined,
    );
    this.inFlight.add(settled);
    void settled.then(() => this.inFlight.delete(settled));
    return pending;
  }

  /** Refuses new writes from now on; resolves once the tracked ones settled. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.inFlight]);
  }
}
