import { Code } from "@connectrpc/connect";
import { createHash } from "node:crypto";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { invalidArgument, RuntimeError } from "./errors.js";

/**
 * The stream a cursor belongs to. Cursors are opaque to clients; inside they
 * are the stream's letter (`w` a worker, `r` the runtime), a tag naming the
 * exact stream, and a sequence number. The tag is a short hash of the
 * runtime id, the worker id and the store's identity, so a cursor from
 * another worker, another runtime or a replaced data dir is refused instead
 * of silently replaying someone else's events from its sequence number.
 */
export interface CursorStream {
  readonly letter: "w" | "r";
  readonly tag: string;
}

/** Length of the tag: 60 bits of SHA-256, enough to tell streams apart. */
const TAG_LENGTH = 10;
/** `<letter><tag>.<seq in base 36>`; the tag is base64url, so it never holds a ".". */
const CURSOR = /^([wr])([A-Za-z0-9_-]{10})\.([0-9a-z]{1,13})$/;
/** Cursors before streams were named: a letter and base-36 digits. */
const OLD_FORMAT = /^[wr][0-9a-z]{1,19}$/;

/** The cursor stream of one worker's events. */
export function workerCursorStream(runtimeId: string, storeId: string, workerId: string): CursorStream {
  return { letter: "w", tag: streamTag(["w", runtimeId, storeId, workerId]) };
}

/** The cursor stream of the runtime-wide events. */
export function runtimeCursorStream(runtimeId: string, storeId: string): CursorStream {
  return { letter: "r", tag: streamTag(["r", runtimeId, storeId]) };
}

/** Encodes the resume point after event `seq` of a stream. */
export function encodeCursor(stream: CursorStream, seq: bigint): string {
  return `${stream.letter}${stream.tag}.${seq.toString(36)}`;
}

/**
 * Decodes a cursor of `stream`; "" means "no cursor" and returns undefined.
 * A cursor of another stream (or of the format before streams were named)
 * is INVALID_ARGUMENT + CURSOR_FOREIGN; anything else that is not a cursor
 * is INVALID_ARGUMENT.
 */
export function decodeCursor(field: string, stream: CursorStream, cursor: string): bigint | undefined {
  if (cursor === "") return undefined;
  const match = CURSOR.exec(cursor);
  if (!match) {
    if (OLD_FORMAT.test(cursor)) throw foreignCursor(field, "was issued in an older cursor format");
    throw invalidArgument(field, "is not a cursor");
  }
  const [, letter, tag, digits = ""] = match;
  if (letter !== stream.letter || tag !== stream.tag) {
    throw foreignCursor(field, "belongs to another stream (another worker, runtime or store)");
  }
  let seq = 0n;
  for (const digit of digits) seq = seq * 36n + BigInt(parseInt(digit, 36));
  return seq;
}

function foreignCursor(field: string, why: string): RuntimeError {
  return new RuntimeError(
    Code.InvalidArgument,
    ErrorReason.CURSOR_FOREIGN,
    `${field}: ${why}; resume without a cursor to start from a fresh snapshot`,
    { field },
  );
}

function streamTag(parts: string[]): string {
  // NUL cannot occur in ids, so the joined parts are unambiguous.
  return createHash("sha256").update(parts.join("\0")).digest("base64url").slice(0, TAG_LENGTH);
}
