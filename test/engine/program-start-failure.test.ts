import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { programStartProblem } from "../../src/engine/tools/program-start-failure.js";

/** The diagnosis judges the file an exec would run, found on PATH as execvp finds it. */

const savedPath = process.env.PATH;
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
  it("passes a program whose first copy on PATH is not executable but a later one is, as the exec runs that one", () => {
    const program = shadowed(0o644);
    expect(spawnSync(program, { encoding: "utf8" }).stdout).toBe("from-b\n");
    expect(programStartProblem(program, "none")).toBeUndefined();
  });

  it("says not executable when no copy on PATH is", () => {
    const program = shadowed(0o644);
    process.env.PATH = (process.env.PATH ?? "").replace(/^([^:]*):[^:]*:/, "$1:");
    expect(programStartProblem(program, "none")).toMatchObject({ cause: "not_executable" });
  });
});
