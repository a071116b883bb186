import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/cli-process.js";

/**
 * An embedder forcing `shellSandbox: "bubblewrap"` on a host without bwrap
 * learnt it only when the model first ran a command (as bwrap's own ENOENT).
 * The lookup is the real one (bwrap on the PATH), so each case builds the
 * backend in a child process whose PATH is chosen: an empty directory (no
 * bwrap), or the test's own (bwrap installed, as the sandbox tests need).
 */
const BUILD = `
  import { createOpenAIBackend } from "./src/engine/index.js";
  try {
    const backend = createOpenAIBackend({ apiKey: "sk-test", baseURL: "http://127.0.0.1:9", shellSandbox: "bubblewrap" });
    process.stdout.write(JSON.stringify({ built: backend.shellSandbox?.() }));
  } catch (error) {
    process.stdout.write(JSON.stringify({ name: error.name, message: error.message }));
  }
`;

async function buildWithPath(path: string): Promise<Record<string, unknown>> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "--input-type=module", "-e", BUILD], {
    cwd: REPO_ROOT,
    env: { ...process.env, PATH: path },
  });
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe("a forced bubblewrap sandbox", () => {
  let emptyDir = "";
  beforeAll(async () => {
    emptyDir = await mkdtemp(join(tmpdir(), "no-bwrap-"));
  });
  afterAll(async () => {
    await rm(emptyDir, { recursive: true, force: true });
  });

  it("is refused when the backend is built on a host without bwrap, with a typed error naming bwrap", async () => {
    expect(await buildWithPath(emptyDir)).toEqual({
      name: "ShellSandboxError",
      message:
        'shellSandbox "bubblewrap" was asked for, but bwrap cannot run here (not on the PATH, or not allowed to create namespaces): install bubblewrap or leave shellSandbox unset',
    });
  }, 30_000);

  it("is built where bwrap runs", async () => {
    expect(await buildWithPath(process.env.PATH ?? "")).toEqual({ built: "bubblewrap" });
  }, 30_000);
});
