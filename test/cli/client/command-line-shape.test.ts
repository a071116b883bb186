import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "../../support/openai-chunks.js";
import { jsonLines, runClient, serveRuntime, type ServedRuntime } from "./client-support.js";

/**
 * The command line's shape as users type it: global options before the
 * command (`worker-runtime --server URL workers list`, as kubectl and crictl
 * take them), `--version`, and the version a served runtime reports, all
 * against a real `serve` process.
 */

const packageVersion = (JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }).version;

let rt: ServedRuntime;

beforeAll(async () => {
  rt = await serveRuntime();
  rt.fake.setFallback(reply({ text: "ok" }));
});

afterAll(async () => {
  await rt?.close();
});

describe("global options before the command", () => {
  it("--server and --output before a single command, a group and its subcommand", async () => {
    // No WORKER_RUNTIME_SERVER: only the leading --server can point the client at rt.
    const info = await runClient(["--server", rt.url, "--output", "json", "runtime", "info"]);
    expect(info.stderr).toBe("");
    expect(info.code).toBe(0);
    expect(jsonLines(info.stdout)[0]).toMatchObject({ runtimeId: "rt-client" });

    const created = await runClient([`--server=${rt.url}`, "workers", "create", "--profile", "companion"]);
    expect(created.code).toBe(0);
    const id = created.stdout.trim();
    const { worker } = await rt.clients.catalog.getWorker({ worker: { runtimeId: rt.runtimeId, workerId: id } });
    expect(worker?.ref?.workerId).toBe(id);

    // A text that starts with a dash, after `--`: the moved options must not land after it as text.
    const sent = await runClient(["--server", rt.url, "--protocol", "connect", "send", id, "--", "-v is not a flag here"]);
    expect(sent.stderr).toBe("");
    expect(sent.code).toBe(0);
    const request = rt.fake.requests.at(-1)?.body as { messages: { role: string; content: unknown }[] };
    expect(JSON.stringify(request.messages.at(-1)?.content)).toContain("-v is not a flag here");
  });

  it("an option given both before and after the command: the later one wins, as with any repeated flag", async () => {
    const both = await runClient(["--output", "json", "runtime", "info", "--output", "text"], { server: rt.url });
    expect(both.code).toBe(0);
    expect(both.stdout).toContain("runtime: rt-client");
  });

  it("an option before the command that is not a client global option is a usage error naming it", async () => {
    const serveFlag = await runClient(["--port", "7070", "serve"]);
    expect(serveFlag).toMatchObject({
      code: 2,
      stdout: "",
      stderr:
        'worker-runtime: "--port" before the command: only --server, --token-file, --runtime, --output and --protocol may come first (worker-runtime [global options] <command> [options])\n',
    });
    const missingValue = await runClient(["--server"]);
    expect(missingValue).toMatchObject({ code: 2, stderr: "worker-runtime: --server needs a value before the command\n" });
    const noCommand = await runClient(["--server", rt.url]);
    expect(noCommand).toMatchObject({ code: 2, stderr: "worker-runtime: a command must follow the global options\n" });
    const notClient = await runClient(["--server", rt.url, "serve"]);
    expect(notClient).toMatchObject({
      code: 2,
      stderr: 'worker-runtime: "serve" takes its own options, not the client\'s global ones: put them after it\n',
    });
  });
});

describe("versions", () => {
  it("--version and `version` print the package's version", async () => {
    for (const args of [["--version"], ["version"]]) {
      const result = await runClient(args);
      expect(result).toMatchObject({ code: 0, stdout: `worker-runtime ${packageVersion}\n`, stderr: "" });
    }
  });

  it("a served runtime reports the package's version", async () => {
    const { runtime } = await rt.clients.management.getRuntime({});
    expect(runtime?.version).toBe(packageVersion);
  });
});

describe("worker-runtime with no command", () => {
  it("is a bad command line: the help goes to stderr and it exits 2; --help and help print it on stdout, exit 0", async () => {
    const none = await runClient([]);
    expect(none.code).toBe(2);
    expect(none.stdout).toBe("");
    expect(none.stderr).toMatch(/^worker-runtime: no command given\nworker-runtime \[global options\] <command> \[options\]/);
    for (const asked of [["--help"], ["help"]]) {
      const help = await runClient(asked);
      expect(help.code, asked.join(" ")).toBe(0);
      expect(help.stderr).toBe("");
      expect(help.stdout).toMatch(/^worker-runtime \[global options\] <command> \[options\]/);
    }
  });
});
