import { promises } from "node:fs";
import type { HostFs } from "../../src/engine/tools/host-lookups.js";

/** The calls of a {@link HostFs}, by name. */
export type HostFsCall = keyof HostFs;

/** Every call a {@link HostFs} makes. */
const ALL_CALLS: readonly HostFsCall[] = ["realpath", "lstat", "stat", "access", "open", "mkdir", "opendir", "rename", "unlink"];

/** The calls that reach into a directory once its path is resolved (realpath and lstat are how a path is resolved). */
export const AFTER_RESOLVING: readonly HostFsCall[] = ALL_CALLS.filter((call) => call !== "realpath" && call !== "lstat");

/**
 * node:fs promises (as the engine's HostFs), except that each call named
 * in `hangs` (every call by default) on a path under `hung` never answers
 * once the first `answered` such calls have: a mount that stops answering
 * after a run opened it (`answered`), or once a path in it is resolved
 * (`hangs`: {@link AFTER_RESOLVING}). `asked` counts the calls that never
 * answer: each would hold one of libuv's threads on a real hung mount.
 */
export function hangingFs(hung: string, answered = 0, hangs: readonly HostFsCall[] = ALL_CALLS): HostFs & { asked: number } {
  let calls = 0;
  const under = (call: HostFsCall, path: unknown): boolean =>
    hangs.includes(call) && typeof path === "string" && (path === hung || path.startsWith(`${hung}/`)) && ++calls > answered;
  const fs: HostFs & { asked: number } = {
    asked: 0,
    realpath: (path: string) => (under("realpath", path) ? never<string>(fs) : promises.realpath(path)),
    lstat: (path: string) => (under("lstat", path) ? never(fs) : promises.lstat(path)),
    stat: (path: string) => (under("stat", path) ? never(fs) : promises.stat(path)),
    access: (path: string, mode?: number) => (under("access", path) ? never<void>(fs) : promises.access(path, mode)),
    open: (path: string, flags: string | number, mode?: number) => (under("open", path) ? never(fs) : promises.open(path, flags, mode)),
    mkdir: (path: string, options?: { recursive?: boolean }) =>
      under("mkdir", path) ? never<string | undefined>(fs) : promises.mkdir(path, options),
    opendir: (path: string) => (under("opendir", path) ? never(fs) : promises.opendir(path)),
    rename: (from: string, to: string) => (under("rename", to) ? never<void>(fs) : promises.rename(from, to)),
    unlink: (path: string) => (under("unlink", path) ? never<void>(fs) : promises.unlink(path)),
  };
  return fs;
}

/**
 * node:fs promises, except that each call named in `calls` (every call by
 * default) on a path under one of `slow` answers (as node:fs would) only
 * after `delayMs`; `asked` counts those calls.
 */
export function slowFs(slow: readonly string[], delayMs: number, calls: readonly HostFsCall[] = ALL_CALLS): HostFs & { asked: number } {
  const within = (path: unknown): boolean => typeof path === "string" && slow.some((dir) => path === dir || path.startsWith(`${dir}/`));
  const under = (call: HostFsCall, path: unknown): boolean => calls.includes(call) && within(path);
  const fs: HostFs & { asked: number } = {
    asked: 0,
    realpath: (path: string) => later(fs, under("realpath", path), () => promises.realpath(path)),
    lstat: (path: string) => later(fs, under("lstat", path), () => promises.lstat(path)),
    stat: (path: string) => later(fs, under("stat", path), () => promises.stat(path)),
    access: (path: string, mode?: number) => later(fs, under("access", path), () => promises.access(path, mode)),
    open: (path: string, flags: string | number, mode?: number) => later(fs, under("open", path), () => promises.open(path, flags, mode)),
    mkdir: (path: string, options?: { recursive?: boolean }) => later(fs, under("mkdir", path), () => promises.mkdir(path, options)),
    opendir: (path: string) => later(fs, under("opendir", path), () => promises.opendir(path)),
    rename: (from: string, to: string) => later(fs, under("rename", to), () => promises.rename(from, to)),
    unlink: (path: string) => later(fs, under("unlink", path), () => promises.unlink(path)),
  };
  function later<T>(counter: { asked: number }, slowly: boolean, call: () => Promise<T>): Promise<T> {
    if (!slowly) return call();
    counter.asked++;
    return new Promise<void>((resolve) => setTimeout(resolve, delayMs)).then(call);
  }
  return fs;
}

/** A call that never answers, counted on `fs`. */
export function never<T>(fs: { asked: number }): Promise<T> {
  fs.asked++;
  return new Promise<T>(() => {});
}
