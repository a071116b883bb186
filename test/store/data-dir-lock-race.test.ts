import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFileStore } from "../../src/store/fs/index.js";

const childScript = path.join(path.dirname(fileURLToPath(import.meta.url)), "lock-child.ts");
const CHILDREN = 6;
const ROUNDS = 5;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-lock-race-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs one child to its end and returns its output line; `noLinks`: on a file system without hard links. */
function runChild(startAt: number, holdMs: number, noLinks: boolean): Promise<string> {
  const child = spawn(process.execPath, ["--import", "tsx", childScript, dir, String(startAt), String(holdMs)], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LOCK_CHILD_TIMES: "1", ...(noLinks ? { LOCK_CHILD_NO_LINKS: "1" } : {}) },
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`child exited ${code}: ${err}`))));
  });
}

/** One child's outcome, and when (wall clock): a holder's hold is [acquiredAt, releasingAt] or longer. */
interface Outcome {
  line: string;
  acquiredAt?: number;
  releasingAt?: number;
  refusedAt?: number;
}

function outcomeOf(output: string): Outcome {
  const lines = output.split("\n");
  const time = (name: string): number | undefined => {
    const found = lines.find((l) => l.startsWith(`${name}-at `));
    return found === undefined ? undefined : Number(found.slice(name.length + 4));
  };
  return {
    line: lines[0] ?? "",
    ...(time("acquired") !== undefined ? { acquiredAt: time("acquired") } : {}),
    ...(time("releasing") !== undefined ? { releasingAt: time("releasing") } : {}),
    ...(time("refused") !== undefined ? { refusedAt: time("refused") } : {}),
  };
}

/**
 * Real processes racing for one data dir whose lock a dead process left
 * (the restart after a crash, with a second start by mistake or a
 * supervisor's retry): exactly one may hold it. Taking over a stale lock
 * used to delete whatever LOCK was there, so one process could delete
 * another's fresh lock, and up to four of six held the data dir at once.
 * On a loaded machine a child can come late, after the first holder has
 * already let go, and then rightly take the lock in its turn: what must
 * never happen is two holds at once, and a refusal while nobody holds it.
 */
describe("the data dir lock across processes", () => {
  // Without hard links the lock and the breaker are created, then written, not linked into place complete.
  for (const [fileSystem, noLinks, rounds] of [
    ["", false, ROUNDS],
    [" (a file system without hard links)", true, 3],
  ] as const) {
    it(`lets one of ${CHILDREN} processes starting together take over a stale lock, never two at once${fileSystem}`, async () => {
      for (let round = 0; round < rounds; round++) {
        await rm(path.join(dir, "LOCK"), { force: true });
        // A pid above the kernel's maximum (4194304) never runs.
        await writeFile(path.join(dir, "LOCK"), JSON.stringify({ pid: 9_999_999 }));
        // Far enough ahead for every child to have started (tsx compiles on start).
        const startAt = Date.now() + 4_000;
        const outcomes = (await Promise.all(Array.from({ length: CHILDREN }, () => runChild(startAt, 1_500, noLinks)))).map(outcomeOf);
        const context = `round ${round}: ${JSON.stringify(outcomes)}`;
        const holds = outcomes.filter((o) => o.line === "acquired").sort((a, b) => (a.acquiredAt ?? 0) - (b.acquiredAt ?? 0));
        expect(holds.length, context).toBeGreaterThanOrEqual(1);
        // One hold after another, never two at once: each holder took the lock after the one before had let go.
        for (let i = 1; i < holds.length; i++) {
          expect(holds[i]?.acquiredAt, context).toBeGreaterThan(holds[i - 1]?.releasingAt ?? Number.POSITIVE_INFINITY);
        }
        // Everyone else was refused while a holder held it (a second's slack: a holder reports its hold
        // when its open() returns, after it took the lock, and refusals are reported after they happen).
        for (const refused of outcomes.filter((o) => o.line !== "acquired")) {
          expect(refused.line).toMatch(/^refused the data dir is in use by another runtime process/);
          const at = refused.refusedAt ?? Number.NaN;
          const during = holds.some((h) => (h.acquiredAt ?? 0) - 1_000 <= at && at <= (h.releasingAt ?? 0) + 1_000);
          expect(during, context).toBe(true);
        }
      }
      // Six process starts a round, each compiling the store through tsx: five rounds took 85 s at load 15 on two cores.
    }, 240_000);
  }
});

/**
 * Two containers on one volume: each runtime is pid 1 of its own pid
 * namespace, so the holder's pid in LOCK is this process's own pid, which
 * a restarted container must take over. The holder's liveness socket
 * tells the two apart: it answers only while the holder runs.
 */
describe("a lock holder whose pid cannot be judged (another pid namespace)", () => {
  // A data dir deep in a mount: its socket's path is past the 103 bytes a unix socket address holds.
  for (const depth of ["short", "long"] as const) {
    it(`is refused while it runs, and taken over once it died (a ${depth} data dir path)`, async () => {
      const dataDir = depth === "short" ? dir : path.join(dir, "deep-".repeat(20));
      if (depth === "long") {
        await mkdir(dataDir);
        expect(Buffer.byteLength(path.join(dataDir, "LOCK.sock"))).toBeGreaterThan(103);
      }
      const holder = spawn(process.execPath, ["--import", "tsx", childScript, dataDir, "0", "60000"], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      const exited = new Promise<void>((resolve) => holder.once("exit", () => resolve()));
      try {
        const line = await new Promise<string>((resolve, reject) => {
          let out = "";
          holder.stdout.on("data", (chunk: Buffer) => {
            out += chunk.toString();
            if (out.includes("\n")) resolve(out.trim());
          });
          holder.once("exit", (code) => reject(new Error(`holder exited ${code} before holding`)));
        });
        expect(line).toBe("acquired");
        // What the other container's LOCK looks like from here: our own pid.
        await writeFile(path.join(dataDir, "LOCK"), JSON.stringify({ pid: process.pid }));
        await expect(createFileStore({ dataDir }).open({ generateRuntimeId: () => "rt-lock-race" })).rejects.toThrow(
          /in use by another runtime process/,
        );
      } finally {
        holder.kill("SIGKILL");
        await exited;
      }
      // Its socket file stays behind, but nobody answers on it any more.
      const store = createFileStore({ dataDir });
      await expect(store.open({ generateRuntimeId: () => "rt-lock-race" })).resolves.toMatchObject({ runtimeId: "rt-lock-race" });
      await store.close();
    }, 60_000);
  }
});
