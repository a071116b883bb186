import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { open } from "node:fs/promises";

/**
 * A file read within a bound: its bytes, or why it was not read. The size is
 * checked on the open file and the read stops one byte past the bound, so a
 * file growing meanwhile is not read whole either (`grew`: its size is then
 * the bytes read, bound + 1). A FIFO, device or directory is not read at all:
 * a plain read of a FIFO waits for a writer forever. I/O errors are thrown.
 */
export type BoundedRead =
  | { kind: "read"; bytes: Buffer; mode: number; mtimeMs: number }
  | { kind: "not-regular"; size: number; mode: number; mtimeMs: number }
  | { kind: "too-large"; size: number; grew: boolean; mode: number; mtimeMs: number };

/** Opened without blocking: a FIFO must not hold the open until someone writes to it. */
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

interface OpenedStat {
  isFile(): boolean;
  size: number;
  mode: number;
  mtimeMs: number;
}

/**
 * Reads at most `maxBytes` of `path` (sync: start-up, where the CLI reads
 * the files its flags name before anything is served).
 */
export function readBoundedSync(path: string, maxBytes: number): BoundedRead {
  const fd = openSync(path, OPEN_FLAGS);
  try {
    const reads = boundedReads(fstatSync(fd), maxBytes);
    let step = reads.next();
    while (!step.done) step = reads.next(readSync(fd, step.value.buffer, step.value.offset, step.value.length, null));
    return step.value;
  } finally {
    closeSync(fd);
  }
}

/** Reads at most `maxBytes` of `path` (async: re-reads while serving). */
export async function readBounded(path: string, maxBytes: number): Promise<BoundedRead> {
  const handle = await open(path, OPEN_FLAGS);
  try {
    const reads = boundedReads(await handle.stat(), maxBytes);
    let step = reads.next();
    while (!step.done) step = reads.next((await handle.read(step.value.buffer, step.value.offset, step.value.length, null)).bytesRead);
    return step.value;
  } finally {
    await handle.close();
  }
}

/** Where the next read puts its bytes. */
interface ReadInto {
  buffer: Buffer;
  offset: number;
  length: number;
}

/**
 * The one bounded read both forms drive, each with its own read call: a
 * file that is not regular or is over the bound is refused, else reads are
 * asked for (yielding where the bytes go; given back how many came) until
 * the end of the file or one byte past the bound, and the result returned.
 */
function* boundedReads(stat: OpenedStat, maxBytes: number): Generator<ReadInto, BoundedRead, number> {
  const refused = refusal(stat, maxBytes);
  if (refused !== undefined) return refused;
  const buffer = Buffer.alloc(Math.min(stat.size, maxBytes) + 1);
  let length = 0;
  while (length < buffer.length) {
    const read = yield { buffer, offset: length, length: buffer.length - length };
    if (read === 0) break;
    length += read;
  }
  return finished(stat, buffer, length, maxBytes);
}

function refusal(stat: OpenedStat, maxBytes: number): BoundedRead | undefined {
  const { size, mode, mtimeMs } = stat;
  if (!stat.isFile()) return { kind: "not-regular", size, mode, mtimeMs };
  return size > maxBytes ? { kind: "too-large", size, grew: false, mode, mtimeMs } : undefined;
}

/** What was read: the bytes, or a refusal when the file grew past the bound since its size was taken. */
function finished(stat: OpenedStat, buffer: Buffer, length: number, maxBytes: number): BoundedRead {
  const { mode, mtimeMs } = stat;
  if (length > maxBytes) return { kind: "too-large", size: length, grew: true, mode, mtimeMs };
  return { kind: "read", bytes: buffer.subarray(0, length), mode, mtimeMs };
}
