import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, promises, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { realpath } from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { EngineLookups } from "../../src/engine/tools/host-lookups.js";
import { programStartProblem, whyProgramCannotStart } from "../../src/engine/tools/program-start-failure.js";
import { UnansweredLookups } from "../../src/runtime/index.js";

/** The diagnosis judges the file an exec would run, found on PATH as execvp finds it. */

const savedPath = process.env.PATH;

/** The engine's lookups on the real file system, with the default timeout. */
function host(): EngineLookups {
  return { lookups: new UnansweredLookups(), timeoutMs: 5_000, fs: promises };
}
const dirs: string[] = [];

afterEach(() => {
  process.env.PATH = savedPath;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Two directories on PATH holding a program of the same name, the first copy with `firstMode`. */
function shadowed(firstMode: number): string {
  const root = mkdtempSync(join(tmpdir(), "program-path-"));
  dirs.push(root);
  const program = "shadowed-tool";
  for (const [dir, mode, says] of [
    ["a", firstMode, "from-a"],
    ["b", 0o755, "from-b"],
  ] as const) {
    mkdirSync(join(root, dir));
    writeFileSync(join(root, dir, program), `#!/bin/sh\necho ${says}\n`, { mode });
  }
  process.env.PATH = `${join(root, "a")}:${join(root, "b")}:${savedPath}`;
  return program;
}

describe("programStartProblem on PATH", () => {
  it("passes a program whose first copy on PATH is not executable but a later one is, as the exec runs that one", async () => {
    const program = shadowed(0o644);
    expect(spawnSync(program, { encoding: "utf8" }).stdout).toBe("from-b\n");
    expect(await programStartProblem(program, "none", host())).toBeUndefined();
  });

  it("says not executable when no copy on PATH is", async () => {
    const program = shadowed(0o644);
    process.env.PATH = (process.env.PATH ?? "").replace(/^([^:]*):[^:]*:/, "$1:");
    expect(await programStartProblem(program, "none", host())).toMatchObject({ cause: "not_executable" });
  });
});

describe("programStartProblem while the host's file systems do not answer", () => {
  it("leaves the program unknown, saying why, rather than calling it not installed", async () => {
    const lookups = new UnansweredLookups(1);
    // Another lookup on the host (a hung workspace root, say) is past its deadline and unanswered.
    expect(await lookups.ask("elsewhere", () => new Promise<never>(() => {}), Date.now() + 10)).toEqual({ kind: "late" });
    expect(await programStartProblem("sh", "none", { lookups, timeoutMs: 5_000, fs: promises })).toEqual({
      program: "sh",
      cause: "host_unanswered",
      message:
        '"sh" could not be checked on this runtime: an earlier lookup on its file systems is still unanswered; try again once it answers',
    });
  });

  it("says the check's time ran out waiting behind an earlier lookup of a PATH directory, which it never asked itself", async () => {
    const program = shadowed(0o755);
    const first = (process.env.PATH ?? "").split(":")[0] ?? "";
    const lookups = new UnansweredLookups();
    // Another check's lookup of that directory is in flight, not yet past its own (later) deadline.
    void lookups.ask(first, () => new Promise<never>(() => {}), Date.now() + 5_000);
    const fs = { ...promises, stat: () => Promise.reject(new Error("a waiter must not ask")) };
    expect(await programStartProblem(program, "none", { lookups, timeoutMs: 50, fs })).toEqual({
      program,
      cause: "host_unanswered",
      message: `"${program}" could not be checked on this runtime: the check's 50 ms ran out while it waited behind an earlier lookup, still unanswered, of a directory on the PATH its commands get; try again once it answers`,
    });
    // Nothing of its own was left unanswered.
    expect(lookups.isUnanswered(first)).toBe(false);
  });
});

describe("whyProgramCannotStart where the exec cannot see", () => {
  /** A program on PATH twice: in `a` (hidden from the exec) naming a missing interpreter, in `b` a working copy. */
  function hiddenFirst(): { program: string; hidden: string; file: string } {
    const root = mkdtempSync(join(tmpdir(), "program-unseen-"));
    dirs.push(root);
    const program = "unseen-tool";
    mkdirSync(join(root, "a"));
    mkdirSync(join(root, "b"));
    writeFileSync(join(root, "a", program), "#!/missing/interp\n", { mode: 0o755 });
    writeFileSync(join(root, "b", program), "#!/bin/sh\necho ok\n", { mode: 0o755 });
    process.env.PATH = `${join(root, "a")}:${join(root, "b")}:${savedPath}`;
    return { program, hidden: join(root, "a"), file: join(root, "a", program) };
  }

  it("passes over a copy whose real path is where the exec cannot see", async () => {
    const { program, hidden } = hiddenFirst();
    const why = await whyProgramCannotStart(program, "ENOENT", "none", host(), [hidden]);
    expect(why).toContain('"/bin/sh"');
  });

  it("does not wait on a real path the file system does not answer, nor ask it again while unanswered", async () => {
    const { program, hidden, file } = hiddenFirst();
    let asked = 0;
    const fs = {
      ...promises,
      realpath: (path: string): Promise<string> => {
        if (path !== file) return realpath(path);
        asked++;
        return new Promise<string>(() => {});
      },
    };
    const lookups = new UnansweredLookups();
    const slow = { lookups, timeoutMs: 200, fs };
    // Its real path took the whole judgment's one deadline: the program is left unchecked, in time.
    expect(await whyProgramCannotStart(program, "ENOENT", "none", slow, [hidden])).toMatch(
      new RegExp(`^"${program}" could not be checked on this runtime: .*200 ms.*; try again once it answers$`),
    );
    expect(lookups.isUnanswered(file)).toBe(true);
    // Not asked again while unanswered, and not known to be hidden, it is judged as there (as a real path that cannot be had).
    expect(await whyProgramCannotStart(program, "ENOENT", "none", slow, [hidden])).toContain('"/missing/interp"');
    expect(asked).toBe(1);
  });
});
