import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startCli } from "../support/cli-process.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-cli-data-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function startAndStop(args: string[]): Promise<string> {
  const cli = startCli(["serve", "--port", "0", "--data-dir", dir, ...args]);
  try {
    const { runtimeId } = await cli.listening;
    cli.child.kill("SIGTERM");
    expect((await cli.exited).code).toBe(0);
    return runtimeId;
  } finally {
    cli.kill();
  }
}

describe("serve --data-dir", () => {
  it("persists the runtime id on first start and keeps it", async () => {
    const first = await startAndStop([]);
    const second = await startAndStop([]);
    expect(second).toBe(first);
    expect(await startAndStop(["--runtime-id", first])).toBe(first);
  });

  it("refuses a conflicting --runtime-id with a clear message", async () => {
    await startAndStop(["--runtime-id", "rt-one"]);
    const cli = startCli(["serve", "--port", "0", "--data-dir", dir, "--runtime-id", "rt-two"]);
    const { code } = await cli.exited;
    // A bad command line: --runtime-id and --data-dir name different runtimes.
    expect(code).toBe(2);
    expect(cli.stderr()).toMatch(/rt-one/);
    expect(cli.stderr()).toMatch(/rt-two/);
  });

  it("stops start-up on a corrupt runtime snapshot, naming the file and what to do", async () => {
    await startAndStop([]);
    await writeFile(path.join(dir, "runtime.snapshot"), "garbage that is not a snapshot");
    const cli = startCli(["serve", "--port", "0", "--data-dir", dir]);
    const { code } = await cli.exited;
    expect(code).not.toBe(0);
    expect(cli.stderr()).toMatch(/runtime\.snapshot/);
    expect(cli.stdout()).not.toMatch(/listening/);
  });
});
