import { constants } from "node:fs";
import { dirname } from "node:path";
import { elfInterpreter } from "./elf-interpreter.js";
import { type EngineLookups, type HostFile, type HostFs, LookupUnanswered, lookUp } from "./host-lookups.js";

/**
 * How much of a program's start is read to find its interpreter: the
 * kernel's own bound on a `#!` line (BINPRM_BUF_SIZE), so a line it would
 * not take whole is not named either.
 */
const FIRST_LINE_BYTES = 256;

/**
 * What the program check (program-start-failure.ts) asks of one file, off
 * the event loop: each call through the engine's lookups under the file's
 * directory, all by the check's one `deadline` (epoch ms), so a hung
 * directory on PATH is asked one call at a time and not again while one is
 * unanswered, and slow directories one after another cannot stretch the
 * check past the operator's timeout. A call that fails answers as the
 * synchronous one did (not there, not executable, unreadable); one not had
 * in time throws LookupUnanswered.
 */
export class ProgramFiles {
  constructor(
    private readonly host: EngineLookups,
    readonly deadline: number,
  ) {}

  /** Whether `path` is a regular file. */
  isRegularFile(path: string): Promise<boolean> {
    return this.answer(path, async (fs) => (await fs.stat(path)).isFile(), false);
  }

  /** Whether `path` exists. */
  exists(path: string): Promise<boolean> {
    return this.answer(
      path,
      async (fs) => {
        await fs.stat(path);
        return true;
      },
      false,
    );
  }

  /** Whether `path` is a regular file this process may execute. */
  isExecutableFile(path: string): Promise<boolean> {
    return this.answer(
      path,
      async (fs) => {
        if (!(await fs.stat(path)).isFile()) return false;
        await fs.access(path, constants.X_OK);
        return true;
      },
      false,
    );
  }

  /** The first bytes of `path` (up to a `#!` line's bound), or undefined when it cannot be read (execute-only, say). */
  readStart(path: string): Promise<Buffer | undefined> {
    return this.answer(path, (fs) => withOpen(fs, path, (file) => readFrom(file, 0, FIRST_LINE_BYTES)), undefined);
  }

  /** The dynamic loader an ELF program names (elf-interpreter.ts), or undefined (none, not ELF, unreadable). */
  loaderOf(path: string): Promise<string | undefined> {
    return this.answer(
      path,
      (fs) => withOpen(fs, path, (file) => elfInterpreter((offset, length) => readFrom(file, offset, length))),
      undefined,
    );
  }

  /** `call`'s answer under `path`'s directory; `failed` when it rejects. */
  private answer<T>(path: string, call: (fs: HostFs) => Promise<T>, failed: T): Promise<T> {
    return lookUp(this.host, dirname(path), call, this.deadline).catch((error: unknown) => {
      if (error instanceof LookupUnanswered) throw error;
      return failed;
    });
  }
}

/** `use`'s answer on `path` opened for reading; the file is closed after, whatever `use` did. */
async function withOpen<T>(fs: HostFs, path: string, use: (file: HostFile) => Promise<T>): Promise<T> {
  const file = await fs.open(path, "r");
  try {
    return await use(file);
  } finally {
    await file.close();
  }
}

/** Up to `length` bytes of an open file from `offset` (fewer at its end). */
async function readFrom(file: HostFile, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await file.read(buffer, 0, length, offset);
  return buffer.subarray(0, bytesRead);
}
