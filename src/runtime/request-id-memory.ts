/**
 * The recent idempotency keys of one worker, bounded and in insertion
 * order: remembering a key again moves it to the newest end, and past the
 * capacity the oldest is forgotten. The core keeps one per worker for
 * SendInput, and the file store rebuilds the same memory on restore, so
 * both forget exactly the same keys.
 */
export class RequestIdMemory<V> {
  private readonly entries = new Map<string, V>();

  constructor(private readonly capacity: number) {}

  /** What `requestId` was remembered with, if it still is. */
  get(requestId: string): V | undefined {
    return this.entries.get(requestId);
  }

  /** Remembers `requestId` as the newest key, forgetting the oldest past the capacity. */
  remember(requestId: string, value: V): void {
    this.entries.delete(requestId);
    this.entries.set(requestId, value);
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }

  /** Forgets `requestId`. */
  forget(requestId: string): void {
    this.entries.delete(requestId);
  }

  /** The remembered values, oldest first. */
  values(): V[] {
    return [...this.entries.values()];
  }

  /** How many keys are remembered. */
  get size(): number {
    return this.entries.size;
  }
}
