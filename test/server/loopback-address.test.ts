import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { isLoopbackAddress } from "../../src/server/server.js";
import { REPO_ROOT } from "../support/cli-process.js";

/**
 * A server without a token listens only where just this machine can reach it.
 * The listen host is checked by name first (`localhost`, 127.x, ::1); what
 * the name resolved to is checked after listening, by the bound address, so a
 * hosts file that maps `localhost` elsewhere cannot open an unauthenticated port.
 */
describe("isLoopbackAddress (the bound address of a server without a token)", () => {
  it.each(["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"])("accepts %s", (address) => {
    expect(isLoopbackAddress(address)).toBe(true);
  });

  it.each(["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "::ffff:10.0.0.1", "fe80::1", "128.0.0.1", "1.127.0.0"])("refuses %s", (address) => {
    expect(isLoopbackAddress(address)).toBe(false);
  });
});

/**
 * The whole check, end to end: `serve --host localhost` without a token in a
 * process whose hosts file maps localhost to 0.0.0.0 (a bubblewrap mount
 * namespace over this machine's root, as the shell tool's sandbox uses)
 * is refused after it resolved, and never says it is listening.
 */
describe("serve --host localhost when localhost resolves to 0.0.0.0", () => {
  it("exits 2, naming what localhost resolved to", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "loopback-"));
    try {
      const hosts = path.join(dir, "hosts");
      await writeFile(hosts, "0.0.0.0 localhost\n");
      const child = spawn(
        "bwrap",
        [
          "--die-with-parent",
          "--dev-bind",
          "/",
          "/",
          "--ro-bind",
          hosts,
          "/etc/hosts",
          process.execPath,
          "--import",
          "tsx",
          "src/cli/main.ts",
          "serve",
          "--host",
          "localhost",
          "--port",
          "0",
        ],
        { cwd: REPO_ROOT, env: { ...process.env, WORKER_RUNTIME_TOKEN: "", OPENAI_API_KEY: "" } },
      );
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        // Listening is the defect: end it here rather than at the test's timeout.
        if (stdout.includes("listening")) child.kill();
      });
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
      expect(stderr).toContain("refusing to listen on localhost without authentication: it resolved to 0.0.0.0, not a loopback address");
      expect(code).toBe(2);
      expect(stdout).not.toContain("listening");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
