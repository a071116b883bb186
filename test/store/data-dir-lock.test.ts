import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFileStore } from "../../src/store/fs/index.js";
import { nobodyCanRunNode, openAsNobody } from "./open-as-nobody.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-lock-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const openInit = { generateRuntimeId: () => "rt-lock" };

describe("the data dir lock", () => {
  it("refuses a second store on the same data dir until the first closes", async () => {
    const first = createFileStore({ dataDir: dir });
    await first.open(openInit);
    const second = createFileStore({ dataDir: dir });
    await expect(second.open(openInit)).rejects.toThrow(/already open in this process/);
    await first.close();
    const third = createFileStore({ dataDir: dir });
    await expect(third.open(openInit)).resolves.toMatchObject({ runtimeId: "rt-lock" });
    await third.close();
  });

  it("refuses while another live process holds it", async () => {
    const other = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.ppid))"], { encoding: "utf8" });
    const livePid = Number(other.stdout);
    expect(livePid).toBeGreaterThan(0);
    await writeFile(path.join(dir, "LOCK"), JSON.stringify({ pid: livePid === process.pid ? 1 : livePid }));
    await expect(createFileStore({ dataDir: dir }).open(openInit)).rejects.toThrow(/in use by another runtime process/);
  });

  it("takes over a lock left by a process that no longer runs", async () => {
    const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    await writeFile(path.join(dir, "LOCK"), JSON.stringify({ pid: Number(gone.stdout) }));
    const store = createFileStore({ dataDir: dir });
    await expect(store.open(openInit)).resolves.toMatchObject({ runtimeId: "rt-lock" });
    await store.close();
  });

  it("lets only one of two stores opening the data dir at once in one process have it", async () => {
    const stores = [createFileStore({ dataDir: dir }), createFileStore({ dataDir: dir })];
    const outcomes = await Promise.allSettled(stores.map((store) => store.open(openInit)));
    expect(outcomes.map((o) => o.status).sort()).toEqual(["fulfilled", "rejected"]);
    const refused = outcomes.find((o) => o.status === "rejected");
    expect(String(refused?.status === "rejected" ? refused.reason : "")).toMatch(/already open in this process/);
    await Promise.all(stores.map((store) => store.close()));
  });

  it("refuses the same data dir reached through another path (a symlink) in one process", async () => {
    const real = path.join(dir, "real");
    await mkdir(real);
    await symlink(real, path.join(dir, "link"));
    const first = createFileStore({ dataDir: real });
    await first.open(openInit);
    await expect(createFileStore({ dataDir: path.join(dir, "link") }).open(openInit)).rejects.toThrow(/already open in this process/);
    await first.close();
  });

  // The pid of a live process (vitest's main process) that does not hold the lock.
  const livePid = process.ppid;
  const hasProc = procReadable();

  it.runIf(hasProc)("takes over a lock written during an earlier boot, whatever now runs under its pid", async () => {
    await writeFile(
      path.join(dir, "LOCK"),
      JSON.stringify({ pid: livePid, bootId: "00000000-0000-0000-0000-000000000000", startTime: "1" }),
    );
    const store = createFileStore({ dataDir: dir });
    await expect(store.open(openInit)).resolves.toMatchObject({ runtimeId: "rt-lock" });
    await store.close();
  });

  it.runIf(hasProc)("takes over a lock whose pid now belongs to a process started later (pid reuse)", async () => {
    const bootId = (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
    await writeFile(path.join(dir, "LOCK"), JSON.stringify({ pid: livePid, bootId, startTime: "1" }));
    const store = createFileStore({ dataDir: dir });
    await expect(store.open(openInit)).resolves.toMatchObject({ runtimeId: "rt-lock" });
    await store.close();
  });

  it.runIf(hasProc)("still refuses a live holder whose start time matches", async () => {
    const { bootId, startTime } = await holderIdentity(livePid);
    await writeFile(path.join(dir, "LOCK"), JSON.stringify({ pid: livePid, bootId, startTime }));
    await expect(createFileStore({ dataDir: dir }).open(openInit)).rejects.toThrow(
      new RegExp(`in use by another runtime process \\(pid ${livePid}\\)`),
    );
  });
});

describe("a data dir the process may not write", () => {
  it.runIf(nobodyCanRunNode())("is refused with a message naming the data dir, not a temp file", async () => {
    // Owned by root, mode 0755: the child, run as nobody, can read it but not write it.
    expect(openAsNobody(dir)).toBe(
      `refused DataDirNotWritableError: the data dir ${dir} cannot be written (EACCES); the file store needs a writable data dir: check its owner, mode and mount`,
    );
  });
});

function procReadable(): boolean {
  try {
    return spawnSync("cat", ["/proc/sys/kernel/random/boot_id", "/proc/self/stat"]).status === 0;
  } catch {
    return false;
  }
}

/** Boot id and start time (clock ticks after boot, field 22 of /proc/<pid>/stat) of a process. */
async function holderIdentity(pid: number): Promise<{ bootId: string; startTime: string }> {
  const bootId = (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const startTime = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "";
  return { bootId, startTime };
}
