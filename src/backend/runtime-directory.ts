import type { RuntimeConnection } from "./runtime-connection.js";

/**
 * The Runtimes a Backend routes to, by runtime_id. Iteration is in
 * runtime_id order, the order of every aggregated answer. A removed
 * Runtime's connection is closed, which ends its relayed watches.
 */
export class RuntimeDirectory {
  private readonly byId = new Map<string, RuntimeConnection>();

  get(runtimeId: string): RuntimeConnection | undefined {
    return this.byId.get(runtimeId);
  }

  /** Registers and starts a connection; the id must be free. */
  add(connection: RuntimeConnection): void {
    if (this.byId.has(connection.runtimeId)) throw new Error(`runtime ${connection.runtimeId} is already registered`);
    this.byId.set(connection.runtimeId, connection);
    connection.start();
  }

  /** Forgets and closes a connection; false when the id is unknown. */
  remove(runtimeId: string, shutdown = false): boolean {
    const connection = this.byId.get(runtimeId);
    if (!connection) return false;
    this.byId.delete(runtimeId);
    connection.close(shutdown);
    return true;
  }

  /** How many runtimes are registered, the embedded one included. */
  get size(): number {
    return this.byId.size;
  }

  /** Every connection, ordered by runtime_id. */
  sorted(): RuntimeConnection[] {
    return [...this.byId.values()].sort((a, b) => compareIds(a.runtimeId, b.runtimeId));
  }

  /** Every runtime_id, in order: what an error about an unknown one names. */
  ids(): string[] {
    return [...this.byId.keys()].sort(compareIds);
  }

  /** Closes every connection: the Backend is shutting down, so the watches relayed through them end cleanly. */
  closeAll(): void {
    for (const id of [...this.byId.keys()]) this.remove(id, true);
  }
}

/** Code-unit order, the same on every platform and locale. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
