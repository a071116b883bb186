import { constants } from "node:fs";
import { dirname } from "node:path";
import { elfInterpreter } from "./elf-interpreter.js";
import { type EngineLookups, type HostFs, LookupUnanswered, lookUp } from "./host-lookups.js";

/**
 * How much of a program's start is read to find its interpreter: the
 * kernel's own bound on a `#!` line (BINPRM_BUF_SIZE), so a line it would
 * not take whole is not named either.
 */
const FIRST_LINE_BYTES = 256;

/**
 * What the program check (program-start-failure.ts) asks of one file, off
 * the event loop: each call through the engine's lookups under the file's
 * directory, within their timeout, so a hung directory on PATH is asked one
 * call at a time and not again while one is unanswered. A call that fails
 * answers as the synchronous one did (not there, not executable,
 * unreadable); one not had in time throws LookupUnanswered.
 */
export class ProgramFiles {
  constructor(private readonly host: EngineLookups) {}

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
    return this.answer(path, () => this.readAt(path, 0, FIRST_LINE_BYTES), undefined);
  }

  /** The dynamic loader an ELF program names (elf-interpreter.ts), or undefined (none, not ELF, unreadable). */
  loaderOf(path: string): Promise<string | undefined> {
    return this.answer(
      path,
      async (fs) => {
        const file = await fs.open(path, "r");
        try {
          return await elfInterpreter(async (offset, length) => {
            const buffer = Buffer.alloc(length);
            const { bytesRead } = await file.read(buffer, 0, length, offset);
            return buffer.subarray(0, bytesRead);
          });
        } finally {
          await file.close();
        }
      },
      undefined,
    );
  }

  private async readAt(path: string, offset: number, length: number): Promise<Buffer> {
    const file = await this.host.fs.open(path, "r");
    try {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await file.read(buffer, 0, length, offset);
      return buffer.subarray(0, bytesRead);
    } finally {
      await file.close();
    }
  }

  /** `call`'s answer under `path`'s directory; `failed` when it rejects. */
  private answer<T>(path: string, call: (fs: HostFs) => Promise<T>, failed: T): Promise<T> {
    return lookUp(this.host, dirname(path), call).catch((error: unknown) => {
      if (error instanceof LookupUnanswered) throw error;
      return failed;
    });
  }
}
