import { chmod, mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { backendFromFlags, ExecutionConfigError } from "../../src/cli/execution-config.js";
import { createOpenAIBackend, HiddenPathError } from "../../src/engine/index.js";
import { hostedRuntime } from "../../src/cli/serve.js";
import { UsageError } from "../../src/cli/usage-error.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { bubblewrapWorks, hideHostPaths, resolveShellSandbox } from "../../src/engine/tools/shell-sandbox.js";
import { startFakeOpenAI } from "../support/fake-openai.js";
import { startHarness as startServer } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";
import { RecordingSink, runRequest } from "../support/recording-sink.js";
import { profileWith, startHarness, TEST_KEY, type Harness } from "../engine/harness.js";

/**
 * The sandbox is what these tests check, so they need bubblewrap like the console's tests need
 * chromium: .ci/run installs both, and the README lists them for `npm test`.
 */
if (!bubblewrapWorks()) throw new Error("the shell.exec sandbox tests need bubblewrap: apt-get install bubblewrap");

/** Host pids whose command line is exactly `argv`. */
async function pidsRunning(argv: readonly string[]): Promise<number[]> {
  const wanted = `${argv.join("\0")}\0`;
  const pids: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, "utf8").catch(() => "");
    if (cmdline === wanted) pids.push(Number(name));
  }
  return pids;
}

async function eventually(probe: () => Promise<boolean>, attempts = 150): Promise<boolean> {
  for (let i = 0; i < attempts; i++) {
    if (await probe()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

describe("shell.exec sandbox", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  async function runCommand(harness: Harness, command: string): Promise<string> {
    harness.fake.enqueue(
      reply({ toolCalls: [{ id: "c1", name: "run_command", arguments: JSON.stringify({ command }) }] }),
      reply({ text: "ok" }),
    );
    const { outcome, sink } = await harness.run({ input: "run", capabilities: ["shell.exec"] });
    expect(outcome.kind).toBe("completed");
    return sink.committed("toolResult")[0]?.output ?? "";
  }

  /**
   * Runs one command through `backend` (built as serve or an embedder builds it) in
   * `workspaceDir`; `extra` adds RunRequest fields (the Runtime's workspace root).
   */
  async function runCommandThrough(
    harness: Harness,
    backend: Harness["backend"],
    command: string,
    workspaceDir: string,
    extra: { workspaceRootDir?: string } = {},
  ): Promise<string> {
    harness.fake.enqueue(
      reply({ toolCalls: [{ id: "c1", name: "run_command", arguments: JSON.stringify({ command }) }] }),
      reply({ text: "ok" }),
    );
    const sink = new RecordingSink("run-sandboxed");
    sink.commitInput("run");
    const profile = backend.profiles()[0];
    const request = {
      ...runRequest(sink, { input: "run", runId: "run-sandboxed", profile, workspaceDir, capabilities: ["shell.exec"] }),
      ...extra,
    };
    expect((await backend.execute(request, sink, new AbortController().signal)).kind).toBe("completed");
    return sink.committed("toolResult")[0]?.output ?? "";
  }

  /** Runs one turn of tool calls through `backend` in `workspaceDir`; returns each call's result. */
  async function runToolsThrough(
    harness: Harness,
    backend: Harness["backend"],
    workspaceDir: string,
    calls: { name: string; args: object }[],
  ): Promise<string[]> {
    harness.fake.enqueue(
      reply({ toolCalls: calls.map(({ name, args }, i) => ({ id: `c${i}`, name, arguments: JSON.stringify(args) })) }),
      reply({ text: "ok" }),
    );
    const sink = new RecordingSink("run-tools");
    sink.commitInput("run");
    const request = runRequest(sink, {
      input: "run",
      runId: "run-tools",
      profile: backend.profiles()[0],
      workspaceDir,
      capabilities: ["fs.read", "shell.exec"],
    });
    expect((await backend.execute(request, sink, new AbortController().signal)).kind).toBe("completed");
    return sink.committed("toolResult").map((result) => result.output);
  }

  it("keeps a private path given as, or reached through, a symlink covered after a command deletes the link", async () => {
    h = await startHarness({ shellSandbox: "bubblewrap" });
    // Outside the sandbox's private /tmp, as a real deployment's files are.
    const base = await realpath(await mkdtemp("/var/tmp/sandbox-linked-private-"));
    try {
      const ws = join(base, "ws");
      await mkdir(join(ws, "private"), { recursive: true });
      await writeFile(join(ws, "private", "token.txt"), "token-inside-the-workspace");
      await mkdir(join(base, "secrets"));
      await writeFile(join(base, "secrets", "key.txt"), "host-secret-behind-a-link");
      // An operator who names private paths through links that happen to lie in a worker's workspace.
      await symlink(join(base, "secrets"), join(ws, "link-out"));
      await symlink("private", join(ws, "link-in"));
      const backend = createOpenAIBackend({
        apiKey: TEST_KEY,
        baseURL: h.fake.baseURL,
        shellSandbox: "bubblewrap",
        hiddenPaths: [join(ws, "link-out"), join(ws, "link-in", "token.txt")],
      });
      const reads = [
        { name: "run_command", args: { command: `cat ${base}/secrets/key.txt private/token.txt; echo done` } },
        { name: "read_file", args: { path: "private/token.txt" } },
        { name: "search_files", args: { query: "token-inside" } },
      ];
      const secrets = ["host-secret-behind-a-link", "token-inside-the-workspace"];
      const before = await runToolsThrough(h, backend, ws, [
        ...reads,
        { name: "run_command", args: { command: "rm link-out link-in; ls" } },
      ]);
      expect(before[0]).toContain("done");
      expect(before[1]).toBe("refused: private/token.txt is private to this runtime");
      expect(before[3]).not.toMatch(/link-/);
      // Deleting the links must not uncover what they named, for commands or for the file tools.
      const after = await runToolsThrough(h, backend, ws, reads);
      expect(after[0]).toContain("done");
      expect(after[1]).toBe("refused: private/token.txt is private to this runtime");
      for (const secret of secrets) expect([...before, ...after].join("\n")).not.toContain(secret);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("refuses at start-up a private path it could not keep covered", async () => {
    h = await startHarness({ shellSandbox: "bubblewrap" });
    const base = await realpath(await mkdtemp("/var/tmp/sandbox-uncoverable-"));
    try {
      await symlink(join(base, "missing"), join(base, "token"));
      const options = { apiKey: TEST_KEY, baseURL: h.fake.baseURL, shellSandbox: "bubblewrap" as const };
      // Where a path leads is asked off the event loop: the backend is ready, or the runtime refused, once it is known.
      const dangling = createOpenAIBackend({ ...options, hiddenPaths: [join(base, "token")] });
      await expect(createRuntime({ executionBackend: dangling })).rejects.toThrow(
        new HiddenPathError(
          `cannot keep ${join(base, "token")} private: ${join(base, "token")} is a symlink whose target does not exist; name the real path`,
        ),
      );
      await symlink(join(base, "loop"), join(base, "loop"));
      await expect(
        createRuntime({ executionBackend: createOpenAIBackend({ ...options, hiddenPaths: [join(base, "loop", "x")] }) }),
      ).rejects.toThrow(/cannot resolve it \(ELOOP\)/);
      // The root directory is refused by its name, as the backend is made.
      expect(() => createOpenAIBackend({ ...options, hiddenPaths: ["/"] })).toThrow(
        new HiddenPathError("cannot keep / private: it is the root directory"),
      );
      // serve's flags: the command line's to fix.
      const flags = { "openai-base-url": h.fake.baseURL, "data-dir": "/" };
      await expect(backendFromFlags(flags, { OPENAI_API_KEY: TEST_KEY })).rejects.toThrow(
        new ExecutionConfigError("cannot keep / private: it is the root directory"),
      );
      // So is a path whose target cannot be told (a dangling link), though that is known only once the runtime asks it.
      await expect(hostedRuntime({ ...flags, "data-dir": join(base, "token") }, silentLogger)).rejects.toThrow(
        new UsageError(
          `cannot keep ${join(base, "token")} private: ${join(base, "token")} is a symlink whose target does not exist; name the real path`,
        ),
      );
      // A path that does not exist yet (a data directory made later) is fine.
      expect(createOpenAIBackend({ ...options, hiddenPaths: [join(base, "data", "not-yet")] }).shellSandbox?.()).toBe("bubblewrap");
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("tells the model its workspace no longer exists, as unsandboxed, when it is deleted before a sandboxed command", async () => {
    h = await startHarness({ shellSandbox: "bubblewrap" });
    const harness = h;
    const profile = profileWith(h.companion, { approvalRequiredTools: ["run_command"] });
    harness.fake.enqueue(
      reply({ toolCalls: [{ id: "c1", name: "run_command", arguments: JSON.stringify({ command: "echo ran" }) }] }),
      reply({ text: "ok" }),
    );
    // The workspace goes away after the run opened it (an operator's clean-up, say): bwrap then fails to bind it.
    const { outcome, sink } = await harness.run({
      input: "run",
      capabilities: ["shell.exec"],
      profile,
      onApproval: async () => {
        await rm(harness.workspace, { recursive: true });
        return { approved: true, reason: "" };
      },
    });
    expect(outcome.kind).toBe("completed");
    const result = sink.committed("toolResult")[0];
    expect(result?.isError).toBe(true);
    // The same plain words as the unsandboxed case (tools.test.ts), not bwrap's "Can't find source path".
    expect(result?.output).toBe("cannot run the command: the workspace no longer exists");
    // Nor does the model's next request carry its host path or bwrap's wording.
    const sent = JSON.stringify(harness.fake.requests.map((request) => request.body));
    expect(sent).not.toContain(dirname(harness.workspace));
    expect(sent).not.toContain("bwrap");
  });

  it("names an allowed program the sandbox does not have, instead of bwrap's execvp error, and the backend can tell", async () => {
    h = await startHarness({ shellSandbox: "bubblewrap" });
    h.fake.enqueue(
      reply({ toolCalls: [{ id: "c1", name: "run_command", arguments: JSON.stringify({ command: "no-such-program-t5 --version" }) }] }),
      reply({ text: "ok" }),
    );
    const sink = new RecordingSink("run-policy");
    sink.commitInput("run");
    const request = {
      ...runRequest(sink, {
        input: "run",
        runId: "run-policy",
        profile: h.companion,
        workspaceDir: h.workspace,
        capabilities: ["shell.exec"],
      }),
      policy: { secrets: new Map<string, string>(), shell: { allowedPrograms: ["echo", "no-such-program-t5"] } },
    };
    expect((await h.backend.execute(request, sink, new AbortController().signal)).kind).toBe("completed");
    expect(sink.committed("toolResult").map((r) => [r.isError, r.output])).toEqual([
      [true, '"no-such-program-t5" is allowed for this worker but is not installed on this runtime'],
    ]);
    expect((await h.backend.programProblems?.(["echo", "no-such-program-t5"]))?.map((p) => p.program)).toEqual(["no-such-program-t5"]);
  });

  it("tells a program the check found but the sandbox could not start in the check's own words, not bwrap's execvp error", async () => {
    // The check looks on the host's PATH; the sandbox covers the private paths. A private file that is
    // also a program makes the two disagree by construction: the check finds env, the exec in the
    // sandbox meets /dev/null (EACCES), as it would a program removed between the check and the spawn.
    h = await startHarness({ shellSandbox: "bubblewrap", hiddenPaths: ["/usr/bin/env"] });
    expect((await h.backend.programProblems?.(["env"]))?.map((p) => p.program)).toEqual([]);
    h.fake.enqueue(
      reply({ toolCalls: [{ id: "c1", name: "run_command", arguments: JSON.stringify({ command: "env --version" }) }] }),
      reply({ text: "ok" }),
    );
    const sink = new RecordingSink("run-race");
    sink.commitInput("run");
    const request = {
      ...runRequest(sink, {
        input: "run",
        runId: "run-race",
        profile: h.companion,
        workspaceDir: h.workspace,
        capabilities: ["shell.exec"],
      }),
      policy: { secrets: new Map<string, string>(), shell: { allowedPrograms: ["env"] } },
    };
    expect((await h.backend.execute(request, sink, new AbortController().signal)).kind).toBe("completed");
    expect(sink.committed("toolResult").map((r) => [r.isError, r.output])).toEqual([
      [true, '"env" is allowed for this worker but is not installed on this runtime'],
    ]);
  });

  it("tells an installed program whose dynamic loader the sandbox lacks as that, not as not installed", async () => {
    // Programs come from the sandbox's fixed PATH, so no file of a temp dir can be one; the loader's
    // directory, covered as a private path, makes the sandbox's exec of a real one fail with ENOENT
    // (bwrap: "execvp true: No such file or directory"), as it does for a binary built for another system.
    const loader = /\/lib[^\0]*\/ld-[^\0]*(?=\0)/.exec((await readFile("/usr/bin/true")).toString("latin1"))?.[0];
    if (loader === undefined) throw new Error("/usr/bin/true names no dynamic loader");
    h = await startHarness({ shellSandbox: "bubblewrap", hiddenPaths: [dirname(loader)] });
    expect((await h.backend.programProblems?.(["true"]))?.map((p) => p.program)).toEqual([]);
    h.fake.enqueue(
      reply({ toolCalls: [{ id: "c1", name: "run_command", arguments: JSON.stringify({ command: "true --version" }) }] }),
      reply({ text: "ok" }),
    );
    const sink = new RecordingSink("run-loader");
    sink.commitInput("run");
    const request = {
      ...runRequest(sink, {
        input: "run",
        runId: "run-loader",
        profile: h.companion,
        workspaceDir: h.workspace,
        capabilities: ["shell.exec"],
      }),
      policy: { secrets: new Map<string, string>(), shell: { allowedPrograms: ["true"] } },
    };
    expect((await h.backend.execute(request, sink, new AbortController().signal)).kind).toBe("completed");
    expect(sink.committed("toolResult").map((r) => [r.isError, r.output])).toEqual([
      [true, '"true" is installed on this runtime but cannot start: the dynamic loader it needs is missing'],
    ]);
  });

  it("hides the workspace's and the private paths' host locations in every line bwrap writes, and only there", () => {
    const mounts = {
      root: [],
      hidden: [],
      insideWorkspace: [],
      privatePaths: ["/srv/rt/data", "/srv/roots/main"],
      workerMounts: [],
      mounts: [],
    };
    const output = [
      "bwrap: Can't bind mount /oldroot/srv/roots/main/w1 on /newroot/workspace: No such file or directory",
      "bwrap: Can't mount tmpfs on /newroot/srv/rt/data: Permission denied",
      "bwrap: Can't find source path /srv/roots/main/w10/x: No such file or directory",
      "the command's own line: /srv/roots/main/w1",
    ].join("\n");
    expect(hideHostPaths(output, "/srv/roots/main/w1", mounts).split("\n")).toEqual([
      "bwrap: Can't bind mount /workspace on /workspace: No such file or directory",
      "bwrap: Can't mount tmpfs on (a private path): Permission denied",
      "bwrap: Can't find source path (a private path)/w10/x: No such file or directory",
      "the command's own line: /srv/roots/main/w1",
    ]);
  });

  it("runs a command in /workspace: its directory, HOME and every path it sees are the fixed path, never the host's", async () => {
    h = await startHarness({ shellSandbox: "bubblewrap", toolLimits: { maxCommandOutputBytes: 600 } });
    // Outside the sandbox's private /tmp, as a real deployment's workspaces are.
    const base = await realpath(await mkdtemp("/var/tmp/sandbox-fixed-path-"));
    try {
      const workspace = join(base, "rt-1", "worker-1");
      await mkdir(join(workspace, "docs"), { recursive: true });
      await writeFile(join(workspace, "docs", "a.md"), "alpha");
      const command = [
        "pwd; echo $HOME; echo $PWD; cd ~ && pwd",
        // Relative paths and symlinks inside the workspace, relative or through the fixed path.
        "cat docs/a.md; echo; ln -s docs rel-link && cat rel-link/a.md; echo; ln -s /workspace/docs abs-link && cat abs-link/a.md; echo",
        // The workspace's host location shows nothing; the sandbox's root is not writable.
        `ls -a ${workspace}; echo host-listed; touch /planted`,
        "echo done; yes 0123456789 | head -c 2000",
      ].join("; ");
      const output = await runCommandThrough(h, h.backend, command, workspace);
      expect(output).not.toContain(base);
      const lines = output.split("\n");
      expect(lines.slice(1, 5)).toEqual(["/workspace", "/workspace", "/workspace", "/workspace"]);
      expect(lines.slice(5, 8)).toEqual(["alpha", "alpha", "alpha"]);
      expect(output).not.toContain("docs");
      expect(output).toMatch(/touch: .*Read-only file system/);
      expect(output).toContain("done");
      // The output bound holds as before.
      expect(output).toContain("[command output truncated: showing the first 600 of");
      // What the command made is in the workspace on the host; its relative symlink works for the file tools too.
      expect(await readFile(join(workspace, "rel-link", "a.md"), "utf8")).toBe("alpha");
      await expect(readFile("/planted")).rejects.toThrow();
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("refuses shell.exec where no sandbox is available unless the operator opts out", () => {
    expect(resolveShellSandbox({ shellSandbox: "none" })).toBe("refused");
    expect(resolveShellSandbox({ shellSandbox: "none", allowUnsandboxedShell: true })).toBe("none");
  });

  it("does not offer shell.exec, and run_command refuses, in refused mode", async () => {
    h = await startHarness({ shellSandbox: "none", allowUnsandboxedShell: false });
    expect(h.backend.toolCapabilities()).not.toContain("shell.exec");
    expect(await runCommand(h, "echo hi")).toContain("no sandbox");
  });

  it("hides the runtime's environment and processes from a command", async () => {
    expect(process.env.VITEST).toBeDefined();
    // PID 1 of the sandbox is bwrap itself, whose environment /proc/1/environ shows. cat's error goes to stdout, so
    // it stays in its section (the two pipes are read as they come, not in the order written).
    const command = `env; echo ---; cat /proc/${process.pid}/environ 2>&1; echo ---; ls /proc; echo ---; tr "\\0" "\\n" < /proc/1/environ`;
    // Without the sandbox the command sees the runtime's environment (the control).
    h = await startHarness({ shellSandbox: "none", allowUnsandboxedShell: true });
    expect(await runCommand(h, command)).toContain("VITEST");
    await h.close();
    h = await startHarness({ shellSandbox: "bubblewrap" });
    expect(h.backend.shellSandbox?.()).toBe("bubblewrap");
    const output = await runCommand(h, command);
    expect(output).not.toContain("VITEST");
    expect(output).toContain(`/proc/${process.pid}/environ: No such file`);
    // bwrap's own environment is the launcher's minimum: a PATH to find bwrap by, nothing of the runtime's.
    expect((output.split("---")[3] ?? "").trim().split("\n")).toEqual([expect.stringMatching(/^PATH=/)]);
    // /proc shows only the sandbox's own processes: never the runtime's pid.
    const listed = output.split("---")[2] ?? "";
    expect(listed.split(/\s+/)).not.toContain(String(process.pid));
  });

  it("drops every capability, so a command cannot unmount what covers the hidden paths even when the runtime runs as root", async () => {
    // Run as root, bwrap keeps every capability in the user namespace it makes, and that namespace owns the
    // sandbox's mounts: a command could unmount the covers of the data dir and token or remount / writable.
    // As another user the capabilities were already none; this test has its teeth where CI runs, as root.
    h = await startHarness({ shellSandbox: "bubblewrap" });
    const output = await runCommand(h, "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status; mount -o remount,rw / 2>&1; echo remount=$?");
    expect(output).toMatch(/CapEff:\s+0000000000000000/);
    expect(output).toMatch(/CapPrm:\s+0000000000000000/);
    expect(output).toMatch(/CapBnd:\s+0000000000000000/);
    expect(output).not.toContain("remount=0");
  });

  it("only the workspace is writable", async () => {
    h = await startHarness({ shellSandbox: "bubblewrap" });
    const escapePath = `/var/tmp/sandbox-escape-${process.pid}-${Date.now()}`;
    const output = await runCommand(h, `echo x > inside.txt && cat inside.txt; echo y > ${escapePath}`);
    expect(output).toContain("x");
    expect(output).toMatch(/Read-only file system/);
    await expect(readFile(escapePath)).rejects.toThrow();
    expect(await readFile(join(h.workspace, "inside.txt"), "utf8")).toBe("x\n");
  });

  it("kills a command that detached with setsid when the run is cancelled", async () => {
    h = await startHarness({ shellSandbox: "bubblewrap" });
    const seconds = String(30_000 + Math.floor(Math.random() * 10_000));
    h.fake.enqueue(
      reply({ toolCalls: [{ id: "c1", name: "run_command", arguments: JSON.stringify({ command: `setsid sleep ${seconds} & wait` }) }] }),
    );
    const controller = new AbortController();
    const running = h.run({ input: "run", signal: controller.signal, capabilities: ["shell.exec"] });
    expect(await eventually(async () => (await pidsRunning(["sleep", seconds])).length > 0)).toBe(true);
    controller.abort();
    expect((await running).outcome).toEqual({ kind: "cancelled" });
    expect(await eventually(async () => (await pidsRunning(["sleep", seconds])).length === 0)).toBe(true);
  });

  it("hides the runtime's own secret files (secrets file, token, TLS key, data dir) from a command", async () => {
    h = await startHarness({ shellSandbox: "bubblewrap" });
    // Outside the sandbox's private /tmp, as a real deployment's files are.
    const base = await realpath(await mkdtemp("/var/tmp/sandbox-secrets-"));
    try {
      const secretsFile = join(base, "secrets.json");
      const tokenFile = join(base, "token");
      const tlsKey = join(base, "tls.key");
      const dataDir = join(base, "data");
      await writeFile(secretsFile, JSON.stringify({ DB_PASSWORD: "hunter2-host-secret" }));
      await chmod(secretsFile, 0o600);
      await writeFile(tokenFile, "bearer-token-of-the-runtime");
      await writeFile(tlsKey, "-----BEGIN PRIVATE KEY----- tls-key-of-the-runtime");
      await mkdir(join(dataDir, "workers"), { recursive: true });
      await writeFile(join(dataDir, "workers", "transcript.log"), "another worker's transcript");
      // The backend as `serve` builds it from its flags: the flags naming these files are what hides them.
      const backend = await backendFromFlags(
        {
          "openai-base-url": h.fake.baseURL,
          "secrets-file": secretsFile,
          "token-file": tokenFile,
          "tls-key": tlsKey,
          "data-dir": dataDir,
        },
        { OPENAI_API_KEY: TEST_KEY },
      );
      expect(backend.shellSandbox?.()).toBe("bubblewrap");
      const command = `cat ${secretsFile} ${tokenFile} ${tlsKey}; ls -R ${dataDir}; cat ${dataDir}/workers/transcript.log; echo kept > kept.txt; echo done`;
      const output = await runCommandThrough(h, backend, command, h.workspace);
      expect(output).toContain("done");
      for (const secret of ["hunter2-host-secret", "bearer-token-of-the-runtime", "tls-key-of-the-runtime", "another worker"]) {
        expect(output).not.toContain(secret);
      }
      // The data directory shows empty: `ls -R` lists no entry under it.
      expect(output).not.toMatch(/^workers$/m);
      // The workspace is still there and writable.
      expect(await readFile(join(h.workspace, "kept.txt"), "utf8")).toBe("kept\n");
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("keeps the private paths that lie inside a command's workspace covered, also after the command moves their parents", async () => {
    h = await startHarness({ shellSandbox: "bubblewrap" });
    const root = await realpath(await mkdtemp("/var/tmp/sandbox-private-inside-"));
    try {
      // An operator who keeps the data and the token under the workspace root; this worker's workspace is the whole root.
      const dataDir = join(root, "state", "data");
      const tokenFile = join(root, "conf", "token");
      await mkdir(join(dataDir, "workers"), { recursive: true });
      await writeFile(join(dataDir, "workers", "transcript.log"), "another worker's transcript");
      await mkdir(join(root, "conf"));
      await writeFile(tokenFile, "bearer-token-of-the-runtime");
      const backend = await backendFromFlags(
        { "openai-base-url": h.fake.baseURL, "data-dir": dataDir, "token-file": tokenFile, "workspace-root": [`main=${root}`] },
        { OPENAI_API_KEY: TEST_KEY },
      );
      const secrets = ["another worker's transcript", "bearer-token-of-the-runtime"];
      const first = await runCommandThrough(
        h,
        backend,
        "cat conf/token /workspace/conf/token state/data/workers/transcript.log; ls -R state; mv state moved; mv conf moved-conf; echo kept > kept.txt; echo done",
        root,
        { workspaceRootDir: root },
      );
      expect(first).toContain("done");
      for (const secret of secrets) expect(first).not.toContain(secret);
      expect(first).not.toMatch(/^workers$/m);
      // Moving a parent must not uncover the private path for the next command.
      const second = await runCommandThrough(
        h,
        backend,
        "cat moved-conf/token moved/data/workers/transcript.log conf/token state/data/workers/transcript.log; echo done",
        root,
        { workspaceRootDir: root },
      );
      expect(second).toContain("done");
      for (const secret of secrets) expect(second).not.toContain(secret);
      expect(await readFile(join(root, "kept.txt"), "utf8")).toBe("kept\n");
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("hides the remote runtimes' token files a backend's --config names", async () => {
    h = await startHarness({ shellSandbox: "bubblewrap" });
    const base = await realpath(await mkdtemp("/var/tmp/sandbox-config-"));
    try {
      await mkdir(join(base, "tokens"));
      await writeFile(join(base, "tokens", "rt-a.token"), "remote-runtime-bearer-token");
      const config = join(base, "backend.json");
      await writeFile(config, JSON.stringify({ runtimes: [{ id: "rt-a", url: "http://10.0.0.1:7070", tokenFile: "tokens/rt-a.token" }] }));
      const backend = await backendFromFlags({ "openai-base-url": h.fake.baseURL, config }, { OPENAI_API_KEY: TEST_KEY });
      const command = `cat ${join(base, "tokens", "rt-a.token")}; echo done`;
      const output = await runCommandThrough(h, backend, command, h.workspace);
      expect(output).toContain("done");
      expect(output).not.toContain("remote-runtime-bearer-token");
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("shows a command its own workspace but not the other workspaces under the runtime's roots", async () => {
    h = await startHarness({ shellSandbox: "bubblewrap" });
    // Outside the sandbox's private /tmp, as a real deployment's roots are.
    const root = await realpath(await mkdtemp("/var/tmp/sandbox-roots-"));
    try {
      const mine = join(root, "mine");
      const other = join(root, "other");
      await mkdir(mine);
      await mkdir(other);
      await writeFile(join(other, "theirs.txt"), "another worker's file");
      await writeFile(join(mine, "mine.txt"), "my own file");
      const backend = await backendFromFlags(
        { "openai-base-url": h.fake.baseURL, "workspace-root": [`shared=${root}`] },
        { OPENAI_API_KEY: TEST_KEY },
      );
      const command = `cat mine.txt; cat ${other}/theirs.txt; ls ${root}; echo written > new.txt`;
      const output = await runCommandThrough(h, backend, command, mine);
      expect(output).toContain("my own file");
      expect(output).not.toContain("another worker's file");
      expect(output).not.toMatch(/^other$/m);
      expect(await readFile(join(mine, "new.txt"), "utf8")).toBe("written\n");
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("hides the other workspaces of the worker's root from an embedder's backend too, which names no private paths", async () => {
    h = await startHarness({ shellSandbox: "bubblewrap" });
    const root = await realpath(await mkdtemp("/var/tmp/sandbox-embedded-"));
    try {
      const mine = join(root, "mine");
      await mkdir(mine);
      await mkdir(join(root, "other"));
      await writeFile(join(root, "other", "theirs.txt"), "another worker's file");
      const command = `cat ${root}/other/theirs.txt; echo done > done.txt`;
      // What the Runtime sends: the workspace and its root (RunRequest.workspaceRootDir).
      const output = await runCommandThrough(h, h.backend, command, mine, { workspaceRootDir: root });
      expect(output).not.toContain("another worker's file");
      expect(await readFile(join(mine, "done.txt"), "utf8")).toBe("done\n");
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("hides the workspaces of the runtime's other roots from an embedder's runtime, which names no private paths", async () => {
    // A program embedding the library: two roots on its Runtime, a backend that lists no hiddenPaths.
    const fake = await startFakeOpenAI();
    const base = await realpath(await mkdtemp("/var/tmp/sandbox-other-roots-"));
    const backend = createOpenAIBackend({ apiKey: TEST_KEY, baseURL: fake.baseURL, shellSandbox: "bubblewrap" });
    const server = await startServer({
      executionBackend: backend,
      workspaceRoots: { mine: join(base, "mine"), theirs: join(base, "theirs") },
    });
    try {
      await mkdir(join(base, "theirs", "w2"), { recursive: true });
      await writeFile(join(base, "theirs", "w2", "theirs.txt"), "a worker's file in another root");
      const clients = server.connect("grpc");
      const { worker } = await clients.catalog.createWorker({
        runtimeId: server.runtime.runtimeId,
        capabilities: ["shell.exec"],
        workspace: { root: "mine", path: "w1" },
      });
      const command = `cat ${base}/theirs/w2/theirs.txt; ls -R ${base}/theirs; echo done`;
      fake.enqueue(
        reply({ toolCalls: [{ id: "c1", name: "run_command", arguments: JSON.stringify({ command }) }] }),
        reply({ text: "ok" }),
      );
      for await (const _ of clients.interaction.streamInput({ worker: worker?.ref, input: { text: "run" } })) {
        // Until the run ends.
      }
      const { entries } = await clients.observation.readTranscript({ worker: worker?.ref });
      const result = entries.find((entry) => entry.content.case === "toolResult")?.content.value;
      const output = result && "output" in result ? result.output : "";
      expect(output).toContain("done");
      expect(output).not.toContain("a worker's file in another root");
      expect(output).not.toMatch(/^w2$/m);
    } finally {
      await server.close();
      await fake.close();
      await rm(base, { recursive: true, force: true });
    }
  });
});
