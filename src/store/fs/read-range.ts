import type { FileHandle } from "node:fs/promises";
import type { FileStoreStats } from "./file-store-stats.js";

/** Reads exactly `length` bytes at `position` (fewer only at end of file). */
export async function readRange(fh: FileHandle, position: number, length: number, stats: FileStoreStats): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  stats.bytesRead += done;
  if (length > stats.largestReadBytes) stats.largestReadBytes = length;
  return done === length ? buf : buf.subarray(0, done);
}
