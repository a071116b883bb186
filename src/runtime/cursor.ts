import { invalidArgument } from "./errors.js";

/**
 * Cursors are opaque to clients. Inside they are a stream letter and a
 * sequence number, so that a worker cursor cannot be mistaken for a runtime
 * cursor and a malformed one is refused instead of silently restarting.
 */
export type CursorStream = "w" | "r";

/** Encodes the resume point after event `seq` of a stream. */
export function encodeCursor(stream: CursorStream, seq: bigint): string {
  return `${stream}${seq.toString(36)}`;
}

/** Decodes a cursor; "" means "no cursor" and returns undefined. */
export function decodeCursor(field: string, stream: CursorStream, cursor: string): bigint | undefined {
  if (cursor === "") return undefined;
  if (cursor.length > 20 || cursor[0] !== stream || !/^[0-9a-z]+$/.test(cursor.slice(1))) {
    throw invalidArgument(field, "is not a cursor of this stream");
  }
  let seq = 0n;
  for (const digit of cursor.slice(1)) seq = seq * 36n + BigInt(parseInt(digit, 36));
  return seq;
}
