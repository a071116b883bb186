/**
 * What an execution backend hands the core (committed entries, a call
 * awaiting approval, a retry, a run's outcome, a diagnostic it reports) with
 * every lone UTF-16 surrogate replaced by U+FFFD, in place.
 *
 * Why: a provider can spell a lone surrogate in its JSON ("\ud800"), and
 * UTF-8 cannot carry one. The encoders already write U+FFFD for it, so the
 * store and every client saw U+FFFD while memory held the surrogate; and
 * protobuf-es's clone refuses such a string, so a Run holding one (a
 * provider's error message, a tool call's arguments) could not be recorded
 * and the run never ended. Repaired on the way in, memory, store and
 * clients agree and every copy succeeds. Live deltas are left alone: a
 * surrogate pair split across two deltas is joined by the engine, and a
 * delta is only ever encoded, never copied.
 */
export function withWellFormedStrings<T extends object>(value: T): T {
  repair(value as Record<string, unknown>);
  return value;
}

/** Repairs the strings of a message, list or map (its keys too) in place. */
function repair(object: Record<string, unknown>): void {
  for (const key of Object.keys(object)) {
    const value = object[key];
    if (typeof value === "string") {
      if (!isWellFormed(value)) object[key] = toWellFormed(value);
    } else if (typeof value === "object" && value !== null && !(value instanceof Uint8Array)) {
      repair(value as Record<string, unknown>);
    }
    // A map's key is text too (a provider's metadata); a field name is always well formed.
    if (!isWellFormed(key)) {
      const fixed = object[key];
      delete object[key];
      object[freeKey(object, toWellFormed(key))] = fixed;
    }
  }
}

/**
 * The name a repaired map key takes: itself, or when another key already has
 * that name ("k\ud800" and "k\udc00" both repair to "k\ufffd", or the map
 * holds "k\ufffd" itself) the first free `<repaired> (n)`, n = 2, 3... Keys
 * that were well formed keep their names; nothing is overwritten, and the
 * same map (keys in the same order) always repairs to the same names.
 */
function freeKey(object: Record<string, unknown>, repaired: string): string {
  if (!Object.hasOwn(object, repaired)) return repaired;
  for (let n = 2; ; n++) {
    const candidate = `${repaired} (${n})`;
    if (!Object.hasOwn(object, candidate)) return candidate;
  }
}

// String.prototype.isWellFormed and toWellFormed: Node 20 has both; ES2024, past this project's ES2023 lib.
/** Whether `text` holds no lone surrogate (what protobuf-es's UTF-8 check accepts). */
export function isWellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}

function toWellFormed(text: string): string {
  return (text as unknown as { toWellFormed(): string }).toWellFormed();
}
