import { randomBytes } from "node:crypto";

/**
 * Generated ids: a prefix, the creation time in base36 (so ids sort roughly
 * by creation) and 64 random bits, within the 64-character id rule.
 */
export function newId(prefix: "rt" | "w" | "r"): string {
  const time = Date.now().toString(36).padStart(9, "0");
  return `${prefix}-${time}${randomBytes(8).toString("hex")}`;
}
