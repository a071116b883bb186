import { invalidArgument } from "./errors.js";

/**
 * Page tokens are opaque to clients: base64url of a small JSON position plus
 * the list it belongs to, so a token from one list is refused by another.
 */
export function encodePageToken(list: string, position: string | number): string {
  return Buffer.from(JSON.stringify([list, position]), "utf8").toString("base64url");
}

/** Decodes a page token for `list`; "" returns undefined (first page). */
export function decodePageToken(field: string, list: string, token: string): string | number | undefined {
  if (token === "") return undefined;
  if (token.length > 512) throw invalidArgument(field, "is not a valid page token");
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (Array.isArray(parsed) && parsed.length === 2 && parsed[0] === list) {
      const position: unknown = parsed[1];
      if (typeof position === "string" || (typeof position === "number" && Number.isSafeInteger(position))) {
        return position;
      }
    }
  } catch {
    // fall through to the typed error below
  }
  throw invalidArgument(field, "is not a valid page token");
}
