/**
 * Child process of data-dir-lock-race.test.ts (and data-dir-lock.test.ts,
 * which runs it as another user): waits until the wall-clock
 * time given (so that all children contend at once), opens a file store on
 * the data dir and prints `acquired` (then holds it for a while) or
 * `refused <message>`. With LOCK_CHILD_TIMES=1 it also prints when, by the
 * wall clock: `acquired-at <ms>` and `releasing-at <ms>` (the lock is still
 * held then; it is released within the close that follows), or `refused-at <ms>`.
 * With LOCK_CHILD_NAMES=1 a refusal names the error's class: `refused <name>: <message>`.
 * With LOCK_CHILD_NO_LINKS=1 every hard link is refused with EPERM, as on a
 * file system that has none (FAT, exFAT, some network mounts).
 */
import { createFileStore } from "../../src/store/fs/index.js";
import { refuseLink } from "./no-hard-links.js";

const [dataDir, startAt, holdMs] = process.argv.slice(2);
if (!dataDir || !startAt || !holdMs) throw new Error("usage: lock-child.ts DATA_DIR START_AT_MS HOLD_MS");

// Sleep until just before the start, then spin the rest: a timer alone would spread the children's
// start by milliseconds, but spinning the whole wait (up to seconds, six children at once) took the
// CPU from the children still starting on a two-core machine, so every round ran long and the
// race test ran out of its time under load.
const SPIN_MS = 100;
const startMs = Number(startAt);
if (startMs - Date.now() > SPIN_MS) await new Promise((resolve) => setTimeout(resolve, startMs - Date.now() - SPIN_MS));
while (Date.now() < startMs) {
  // the last stretch: all children leave this loop within a millisecond of each other
}
const times = process.env["LOCK_CHILD_TIMES"] === "1";
const at = (what: string): void => {
  if (times) process.stdout.write(`${what}-at ${Date.now()}\n`);
};
const noLinks = process.env["LOCK_CHILD_NO_LINKS"] === "1";
const store = createFileStore({ dataDir, ...(noLinks ? { faults: { beforeLink: refuseLink } } : {}) });
try {
  await store.open({ generateRuntimeId: () => "rt-lock-race" });
} catch (error) {
  const named = process.env["LOCK_CHILD_NAMES"] === "1" && error instanceof Error ? `${error.name}: ` : "";
  process.stdout.write(`refused ${named}${error instanceof Error ? error.message : String(error)}\n`);
  at("refused");
  process.exit(0);
}
process.stdout.write("acquired\n");
at("acquired");
await new Promise((resolve) => setTimeout(resolve, Number(holdMs)));
at("releasing");
await store.close();
