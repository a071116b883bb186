import type { HostLookups, LookupOutcome } from "../../runtime/index.js";

/**
 * The file system calls the engine's host lookups make: private paths,
 * program checks, real paths (node:fs promises; a test may give one that
 * does not answer, as a hung network mount).
 */
export interface HostFs {
  realpath(path: string): Promise<string>;
  lstat(path: string): Promise<{ isSymbolicLink(): boolean }>;
  stat(path: string): Promise<{ isFile(): boolean; isDirectory(): boolean }>;
  access(path: string, mode?: number): Promise<void>;
  open(path: string, flags: string): Promise<HostFile>;
  mkdir(path: string, options?: { recursive?: boolean }): Promise<string | undefined>;
}

/** An open file, as {@link HostFs.open} gives it (a node:fs FileHandle). */
export interface HostFile {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

/**
 * How the engine asks the host's file system: through the runtime's
 * lookups, each within its `timeoutMs` (limits.hostPathTimeoutMs, handed
 * over at ExecutionBackend.ready), on `fs`. Shared by a backend's runs,
 * its CreateWorker checks and its start-up checks.
 */
export interface EngineLookups extends HostLookups {
  fs: HostFs;
}

/** A lookup not had: not answered within the timeout, or not asked now (one under its key, or too many, unanswered). */
export class LookupUnanswered extends Error {
  override readonly name = "LookupUnanswered";

  constructor(
    /** What became of it (LookupOutcome): "host_full" is for other lookups, not this key's. */
    readonly outcome: Exclude<LookupOutcome<unknown>, { kind: "answered" }>,
  ) {
    super(`a lookup was not answered (${outcome.kind})`);
  }
}

/**
 * `call`'s answer, asked under `key` (a directory: one hung directory is
 * asked one call at a time, and not again while one is unanswered), or a
 * {@link LookupUnanswered} when it is not had by `deadline` (epoch ms: the
 * whole check's or tool call's, so calls one after another share one
 * timeout rather than taking one each). A rejection (the file is missing,
 * unreadable) is thrown as it came.
 */
export async function lookUp<T>(host: EngineLookups, key: string, call: (fs: HostFs) => Promise<T>, deadline: number): Promise<T> {
  const outcome = await host.lookups.ask(key, () => call(host.fs), deadline);
  if (outcome.kind !== "answered") throw new LookupUnanswered(outcome);
  return outcome.value;
}

/**
 * Why a tool call's or a run's lookup was not had, in words for the model
 * (no host path); `fileSystem` names what was asked ("the workspace's file
 * system"): it did not answer within `timeoutMs`, one before it still had
 * not, the time ran out waiting its turn behind one or on lookups before
 * it, or too many on the host are unanswered.
 */
export function unansweredWhy(outcome: LookupUnanswered["outcome"], fileSystem: string, timeoutMs: number): string {
  switch (outcome.kind) {
    case "host_full":
      return outcome.unanswered === 1
        ? "an earlier lookup on this runtime's file systems is still unanswered"
        : `${outcome.unanswered} earlier lookups on this runtime's file systems are still unanswered`;
    case "waited":
      return `its ${timeoutMs} ms ran out while it waited behind an earlier lookup, still unanswered, on ${fileSystem}`;
    case "no_time":
      return `its ${timeoutMs} ms ran out before ${fileSystem} could be asked`;
    case "late":
    case "key_unanswered":
      return `${fileSystem} did not answer within ${timeoutMs} ms`;
  }
}
