import { decodeSnapshot, encodeSnapshot } from "./snapshot-file.js";

/** `runtime.snapshot`: what identifies the runtime that owns a data dir. */
export interface RuntimeSnapshot {
  runtimeId: string;
}

/** Encodes the runtime snapshot (a small JSON body inside a checksummed frame). */
export function encodeRuntimeSnapshot(snapshot: RuntimeSnapshot): Buffer {
  return encodeSnapshot(Buffer.from(JSON.stringify({ runtimeId: snapshot.runtimeId }), "utf8"));
}

/** Decodes the runtime snapshot, or says why it cannot be used. */
export function decodeRuntimeSnapshot(content: Buffer): RuntimeSnapshot | { problem: string } {
  const decoded = decodeSnapshot(content);
  if ("problem" in decoded) return decoded;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(decoded.body).toString("utf8"));
    if (typeof parsed === "object" && parsed !== null && "runtimeId" in parsed) {
      const { runtimeId } = parsed;
      if (typeof runtimeId === "string" && runtimeId !== "") return { runtimeId };
    }
  } catch {
    // Reported below like any other malformed body.
  }
  return { problem: "snapshot body is not a runtime snapshot" };
}
