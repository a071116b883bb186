import { describe, expect, it } from "vitest";
import { START_ENTRY } from "../console/console-process.js";
import { startCli } from "../support/cli-process.js";

/**
 * An empty path is the current directory to Node's path functions: `--data-dir ""` would put
 * the store's files in the working directory, `--workspace-root ""` would offer it to workers.
 * Every path-valued flag refuses an empty value as a bad command line, naming the flag.
 */
async function refused(args: string[], entry?: typeof START_ENTRY): Promise<{ code: number | null; stderr: string }> {
  const cli = entry ? startCli(args, {}, entry) : startCli(args);
  // One that starts serving (the defect) would never exit: stop waiting after a while and fail.
  let timer: NodeJS.Timeout | undefined;
  const running = new Promise<{ code: null }>((resolve) => {
    timer = setTimeout(() => resolve({ code: null }), 20_000);
  });
  try {
    const { code } = await Promise.race([cli.exited, running]);
    return { code, stderr: cli.stderr() };
  } finally {
    clearTimeout(timer);
    cli.kill();
    await cli.exited;
  }
}

describe("empty path flags", () => {
  it.each([["--data-dir"], ["--token-file"], ["--profiles"]])("serve %s '' is a usage error naming the flag", async (flag) => {
    const { code, stderr } = await refused(["serve", "--port", "0", flag, ""]);
    expect(code).toBe(2);
    expect(stderr).toBe(`worker-runtime: ${flag} must not be empty\n`);
  });

  it.each([[""], ["name="]])("serve --workspace-root '%s' is a usage error, not the current directory", async (value) => {
    const { code, stderr } = await refused(["serve", "--port", "0", "--workspace-root", value]);
    expect(code).toBe(2);
    expect(stderr).toBe("worker-runtime: --workspace-root needs a directory (got an empty path)\n");
  });

  it.each([["--bundles-dir"], ["--console"]])("backend %s '' is a usage error naming the flag", async (flag) => {
    const { code, stderr } = await refused(["backend", "--port", "0", "--http1-port", "0", flag, ""]);
    expect(code).toBe(2);
    expect(stderr).toBe(`worker-runtime: ${flag} must not be empty\n`);
  });

  it("npm start --data-dir '' is a usage error, not the current directory", async () => {
    const { code, stderr } = await refused(["--port", "0", "--grpc-port", "0", "--data-dir", ""], START_ENTRY);
    expect(code).toBe(2);
    expect(stderr).toBe("worker-runtime: --data-dir must not be empty\n");
  });
});
