import { decodeSnapshot, encodeSnapshot } from "./snapshot-file.js";

/** `runtime.snapshot`: what identifies the runtime that owns a data dir. */
export interface RuntimeSnapshot {
  runtimeId: string;
  /**
   * The identity of this data dir's content (random, written when the data
   * dir is created; see `OpenedStore.storeId`). Empty for data dirs created
   * before it existed: they are not rewritten at open, because start-up must
   * not depend on a write succeeding (a full disk would stop it).
   */
  storeId: string;
}

/** Encodes the runtime snapshot (a small JSON body inside a checksummed frame). */
export function encodeRuntimeSnapshot(snapshot: RuntimeSnapshot): Buffer {
  const body = { runtimeId: snapshot.runtimeId, ...(snapshot.storeId !== "" ? { storeId: snapshot.storeId } : {}) };
  return encodeSnapshot(Buffer.from(JSON.stringify(body), "utf8"));
}

/** Decodes the runtime snapshot, or says why it cannot be used. */
export function decodeRuntimeSnapshot(content: Buffer): RuntimeSnapshot | { problem: string } {
  const decoded = decodeSnapshot(content);
  if ("problem" in decoded) return decoded;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(decoded.body).toString("utf8"));
    if (typeof parsed === "object" && parsed !== null && "runtimeId" in parsed) {
      const { runtimeId } = parsed;
      const storeId = "storeId" in parsed ? parsed.storeId : "";
      if (typeof runtimeId === "string" && runtimeId !== "" && typeof storeId === "string") return { runtimeId, storeId };
    }
  } catch {
    // Reported below like any other malformed body.
  }
  return { problem: "snapshot body is not a runtime snapshot" };
}
