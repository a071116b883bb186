import type { Dirent, Stats } from "node:fs";
import type { HostLookups, LookupOutcome } from "../../runtime/index.js";

/**
 * The file system calls the engine makes on the host: private paths,
 * program checks, real paths, and every call of the file tools once a
 * path is resolved (node:fs promises; a test may give one that does not
 * answer, as a hung network mount).
 */
export interface HostFs {
  realpath(path: string): Promise<string>;
  lstat(path: string): Promise<Stats>;
  stat(path: string): Promise<Stats>;
  access(path: string, mode?: number): Promise<void>;
  open(path: string, flags: string | number, mode?: number): Promise<HostFile>;
  mkdir(path: string, options?: { recursive?: boolean }): Promise<string | undefined>;
  /** A directory's entries, read as iterated; breaking out of the iteration closes it. */
  opendir(path: string): Promise<AsyncIterable<Dirent>>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
}

/** An open file, as {@link HostFs.open} gives it (a node:fs FileHandle). */
export interface HostFile {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  readFile(options?: { signal?: AbortSignal }): Promise<Buffer>;
  writeFile(data: string | Buffer, options: { encoding: "utf8"; signal: AbortSignal }): Promise<void>;
  stat(): Promise<Stats>;
  chmod(mode: number): Promise<void>;
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
 * unreadable) is thrown as it came. With a `signal` (a tool call's, the
 * run's), its abort reason is thrown as soon as it aborts: a cancelled run
 * does not wait out the deadline. The lookup itself runs on, and is counted
 * unanswered if it is past its deadline.
 */
export async function lookUp<T>(
  host: EngineLookups,
  key: string,
  call: (fs: HostFs) => Promise<T>,
  deadline: number,
  signal?: AbortSignal,
): Promise<T> {
  if (signal?.aborted) throw signal.reason;
  const asked = host.lookups.ask(key, () => call(host.fs), deadline);
  const outcome = await (signal === undefined ? asked : untilAborted(asked, signal));
  if (outcome.kind !== "answered") throw new LookupUnanswered(outcome);
  return outcome.value;
}

/** `answer`, or `signal`'s reason thrown as soon as it aborts. */
function untilAborted<T>(answer: Promise<T>, signal: AbortSignal): Promise<T> {
  let stop = (): void => {};
  const aborted = new Promise<never>((_, reject) => {
    stop = () => reject(signal.reason);
    signal.addEventListener("abort", stop, { once: true });
  });
  return Promise.race([answer, aborted]).finally(() => signal.removeEventListener("abort", stop));
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
