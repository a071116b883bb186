import { readBounded } from "../../files/index.js";
import { notWritable } from "./data-dir-errors.js";
import { type Disk, errorCode } from "./disk.js";
import { FORMAT_FILE } from "./layout.js";

/**
 * The data dir's format: what this build writes and the newest it reads.
 * Raise it with a change to the data dir that an older build would
 * misread; that build then refuses the data dir instead of damaging it.
 * Every earlier format is read as it is (test/store/older-data-dirs.test.ts),
 * and a data dir without a FORMAT file is one of them.
 */
export const DATA_DIR_FORMAT = 1;

const LINE = /^worker-runtime data dir format (\d{1,9})\n?$/;

/** The data dir is in a format this build does not read (a newer one), or its FORMAT file is damaged. */
export class DataDirFormatError extends Error {
  override readonly name = "DataDirFormatError";
}

/**
 * Refuses a data dir a newer build wrote in a format this one does not
 * know, before anything in it is read or written (downgrades are not
 * supported, and an older reader could misread what it does not know);
 * records this build's format in a data dir that has none yet.
 */
export async function checkDataDirFormat(disk: Disk): Promise<void> {
  const read = await readBounded(disk.abs(FORMAT_FILE), 256).catch((error: unknown) => {
    if (errorCode(error) === "ENOENT") return undefined;
    throw error;
  });
  if (read === undefined) {
    const line = new TextEncoder().encode(`worker-runtime data dir format ${DATA_DIR_FORMAT}\n`);
    await disk.replaceFile(FORMAT_FILE, line).catch((error: unknown) => {
      throw notWritable(disk.root, error, `its ${FORMAT_FILE} file (a few dozen bytes) cannot be written`);
    });
    return;
  }
  const format = read.kind === "read" ? LINE.exec(read.bytes.toString("utf8"))?.[1] : undefined;
  if (format === undefined) {
    throw new DataDirFormatError(
      `${FORMAT_FILE} in the data dir ${disk.root} is damaged (it should hold one line, "worker-runtime data dir format N"); ` +
        `restore it from a backup, or write the format of the build that last used the data dir`,
    );
  }
  if (Number(format) > DATA_DIR_FORMAT) {
    throw new DataDirFormatError(
      `the data dir ${disk.root} is in format ${format}, written by a newer worker-runtime; this build reads formats up to ` +
        `${DATA_DIR_FORMAT}. Run that newer build (going back to an older one after an upgrade is not supported)`,
    );
  }
}
