import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import type { EngineLookups } from "./host-lookups.js";
import { splitCommandWords } from "./command-words.js";
import { programStartProblem, whyProgramCannotStart } from "./program-start-failure.js";
import {
  hideHostPaths,
  locateOnHost,
  sandboxedArgv,
  sandboxLauncherEnv,
  sandboxMounts,
  sandboxSetupFailed,
  type ShellSandboxMode,
} from "./shell-sandbox.js";
import { optionalIntArg, requireWorkspace, type ShellPolicy, stringArg, ToolError, type ToolDefinition } from "./tool.js";
import { truncationNote } from "./output-bounds.js";

/**
 * run_command (`shell.exec`): runs `sh -c` in the workspace. The shell is
 * started in its own process group (`detached`) so that a timeout, a cancel
 * or the command's own exit can SIGKILL everything it started — children
 * included — with one `kill(-pgid)`; killing only the shell would leave its
 * children running and holding the output pipes open.
 *
 * Where bubblewrap is available the command runs in its sandbox
 * (shell-sandbox.ts), which closes the limits below. Without a sandbox
 * (`--allow-unsandboxed-shell`, the operator's explicit choice) they remain:
 * - The command runs as the runtime's user with its permissions; the
 *   workspace confines file tools, not commands. Nor are a worker's mounts
 *   remapped to /mounts (their run_command description says nothing of them
 *   then): the command sees the host, where they are wherever the operator
 *   keeps them, and a read-only mount is no more read-only to it than any
 *   other file the runtime's user may write.
 * - Credentials are left out of the command's environment, but the command
 *   can still read the runtime's own environment through
 *   `/proc/$PPID/environ`, so `shell.exec` exposes the provider key.
 * - A process that calls `setsid` leaves the process group and survives the
 *   group kill (the tool stops waiting for it after a grace period).
 *
 * These are not said in the model-facing description on purpose: it would
 * tell the model how to get around them.
 */
export const runCommandTool: ToolDefinition = {
  name: "run_command",
  capability: "shell.exec",
  description:
    "Run a shell command (sh -c) in the workspace root. Returns the exit code and combined stdout/stderr (bounded). Background processes are killed when the command ends.",
  parameters: {
    type: "object",
    properties: {
      command: { type: "string", description: "The shell command line." },
      timeout_ms: { type: "integer", description: "Kill the command after this many milliseconds." },
    },
    required: ["command"],
    additionalProperties: false,
  },
  async run(args, context) {
    const workspace = requireWorkspace(context, "commands");
    const command = stringArg(args, "command");
    const { defaultCommandTimeoutMs, maxCommandTimeoutMs, maxCommandOutputBytes } = context.limits;
    const timeoutMs = Math.min(optionalIntArg(args, "timeout_ms") ?? defaultCommandTimeoutMs, maxCommandTimeoutMs);
    if (context.shellSandbox === "refused") {
      throw new ToolError("commands are not available on this runtime: it has no sandbox for them");
    }
    const line = await commandLine(command, context.shellPolicy, context.shellSandbox ?? "none", context.hostLookups);
    // Under a policy the first word is a program the check found; without one it is the shell itself.
    const program = context.shellPolicy ? line[0] : undefined;
    const workerMounts = workspace.mounts.map((mount) => ({ name: mount.name, root: mount.area.root, writable: mount.writable }));
    const mounts =
      context.shellSandbox === "bubblewrap"
        ? await sandboxMounts(workspace.root, context.shellHiddenPaths ?? [], context.hostLookups, workerMounts)
        : undefined;
    // Unsandboxed, the child changes into the workspace while libuv's spawn waits for its exec, holding the event loop:
    // a workspace that does not answer is found first, in time, as the sandbox finds it.
    if (!mounts)
      await locateOnHost(workspace.root, "the workspace's file system", context.hostLookups, Date.now() + context.hostLookups.timeoutMs);
    // bwrap changes into /workspace itself; started in the host's workspace, a missing one read as "spawn bwrap ENOENT".
    // Its own spawn failing is not the program's: bwrap reports the program's exec failure in its output.
    const bounds = { timeoutMs, maxBytes: maxCommandOutputBytes };
    const result = mounts
      ? await runInGroup(sandboxedArgv(line, workspace.root, mounts), { cwd: "/", env: sandboxLauncherEnv(), ...bounds }, context.signal)
      : await runInGroup(
          line,
          {
            cwd: workspace.root,
            env: commandEnv(),
            ...bounds,
            ...(program !== undefined ? { policy: { program, host: context.hostLookups } } : {}),
          },
          context.signal,
        );
    if (mounts && result.code === 1 && sandboxSetupFailed(result.output)) {
      // bwrap could not bind a workspace deleted mid-run: told as unsandboxed (startFailure), without bwrap's wording.
      if (!(await isDirectory(workspace.root))) throw new ToolError(WORKSPACE_GONE);
      // Nor exec a program the check found: told why, as unsandboxed (startFailure), for what the sandbox sees.
      const code = program !== undefined ? bwrapExecError(result.output, program) : undefined;
      if (program !== undefined && code !== undefined) {
        const unseen = [...mounts.privatePaths, workspace.root, "/tmp"];
        throw new ToolError(await whyProgramCannotStart(program, code, "bubblewrap", context.hostLookups, unseen));
      }
    }
    const status = result.timedOut
      ? `killed after the ${timeoutMs} ms timeout`
      : result.signal
        ? `killed by ${result.signal}`
        : `exit code ${result.code}`;
    const cut = result.totalBytes > maxCommandOutputBytes;
    const output = mounts ? hideHostPaths(result.output, workspace.root, mounts) : result.output;
    return {
      output: `${status}\n${output}`,
      // Kept whole when the tool output bound cuts the output (the same size by default).
      notes: cut ? [truncationNote("command output", maxCommandOutputBytes, result.totalBytes)] : [],
      isError: result.timedOut || result.code !== 0,
      truncated: cut,
    };
  },
};

/**
 * What to execute. Without a policy: `sh -c command`. With a config
 * bundle's shell policy (ShellPolicy in profile.proto): the command's words,
 * run without a shell, when its program is on the allow-list — a shell
 * would make the program name meaningless (`ls; rm -rf .`). A refusal is a
 * tool error the model can read, and names the allowed programs. An allowed
 * program this host does not have is named too (CreateWorker refuses such a
 * policy, but a program can be removed after), rather than left to spawn's
 * `spawn X ENOENT` or bwrap's execvp error; one that is there but cannot
 * run is told why (program-start-failure.ts).
 */
async function commandLine(
  command: string,
  policy: ShellPolicy | undefined,
  mode: ShellSandboxMode,
  host: EngineLookups,
): Promise<string[]> {
  if (!policy) return ["/bin/sh", "-c", command];
  const allowed = policy.allowedPrograms;
  if (allowed.length === 0) throw new ToolError("this worker's policy allows no commands");
  const words = splitCommandWords(command);
  const program = words[0];
  if (program === undefined) throw new ToolError("the command is empty");
  if (!allowed.includes(program)) {
    throw new ToolError(`"${program.slice(0, 64)}" is not an allowed program for this worker; allowed: ${allowed.join(", ")}`);
  }
  const problem = await programStartProblem(program, mode, host);
  if (problem) throw new ToolError(problem.message);
  return words;
}

/** The exec error bwrap's output reports for `program` (its "execvp X: <strerror>" line), as spawn names it. */
function bwrapExecError(output: string, program: string): "ENOENT" | "EACCES" | undefined {
  const lines = output.split("\n");
  if (lines.includes(`bwrap: execvp ${program}: No such file or directory`)) return "ENOENT";
  if (lines.includes(`bwrap: execvp ${program}: Permission denied`)) return "EACCES";
  return undefined;
}

interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  output: string;
  totalBytes: number;
}

/** What the model is told when its workspace was deleted before a command could start in it, sandboxed or not. */
const WORKSPACE_GONE = "cannot run the command: the workspace no longer exists";

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/**
 * Why a command could not start, for the model. A working directory that is
 * gone (the workspace deleted mid-run, unsandboxed) makes spawn fail with
 * "spawn /bin/sh ENOENT", which reads as a missing shell; it is told as
 * what it is, without the host path, as the sandbox tells it ("/workspace").
 * With the workspace there, an ENOENT or EACCES is the policy's `program`'s
 * (found by the check): gone since, or there but unable to run (its
 * interpreter or loader missing, not executable), told which.
 */
async function startFailure(error: Error, cwd: string, policy: PolicyProgram | undefined): Promise<ToolError> {
  const code = "code" in error ? error.code : undefined;
  if ((code === "ENOENT" || code === "ENOTDIR") && !(await isDirectory(cwd))) return new ToolError(WORKSPACE_GONE);
  if (policy !== undefined && (code === "ENOENT" || code === "EACCES") && (await isSearchable(cwd)))
    return new ToolError(await whyProgramCannotStart(policy.program, code, "none", policy.host));
  return new ToolError(`could not start the command: ${error.message}`);
}

/** Whether a command could change into `path` (an EACCES there is the workspace's, not the program's). */
async function isSearchable(path: string): Promise<boolean> {
  return (
    (await isDirectory(path)) &&
    (await access(path, constants.X_OK)
      .then(() => true)
      .catch(() => false))
  );
}

/**
 * Environment variables that look like credentials are not handed to commands
 * the model writes. This is not a boundary: see the limits on {@link runCommandTool}.
 */
const SECRET_ENV = /^OPENAI_|KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL/i;

function commandEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !SECRET_ENV.test(name)));
}

/** The policy's program a command starts, and how to ask the host about it, for {@link startFailure}. */
interface PolicyProgram {
  program: string;
  host: EngineLookups;
}

/** How {@link runInGroup} starts a command and bounds it. */
interface Launch {
  cwd: string;
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  maxBytes: number;
  /** The policy's program, for {@link startFailure}. */
  policy?: PolicyProgram;
}

/** Runs `argv` in its own process group. */
function runInGroup(argv: readonly string[], launch: Launch, signal: AbortSignal): Promise<CommandResult> {
  const { cwd, env, timeoutMs, maxBytes, policy } = launch;
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const [file = "/bin/sh", ...args] = argv;
    const child = spawn(file, args, {
      cwd,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const kept: Buffer[] = [];
    let keptBytes = 0;
    let totalBytes = 0;
    let timedOut = false;
    const collect = (data: Buffer): void => {
      totalBytes += data.length;
      if (keptBytes < maxBytes) {
        const slice = data.subarray(0, maxBytes - keptBytes);
        kept.push(slice);
        keptBytes += slice.length;
      }
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // ESRCH: the group is already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    const onAbort = (): void => killGroup();
    signal.addEventListener("abort", onAbort, { once: true });
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let graceTimer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(graceTimer);
      signal.removeEventListener("abort", onAbort);
      child.stdout.destroy();
      child.stderr.destroy();
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const output = Buffer.concat(kept)
        .toString("utf8")
        .replace(/\uFFFD$/, "");
      resolve({ code: exit?.code ?? null, signal: exit?.signal ?? null, timedOut, output, totalBytes });
    };
    child.on("error", (error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      startFailure(error, cwd, policy).then(reject, reject);
    });
    child.on("exit", (code, exitSignal) => {
      exit = { code, signal: exitSignal };
      // Background children die with the command, so nothing it started
      // outlives the tool call or keeps the pipes open.
      killGroup();
      // A process that left the group could still hold the pipes; don't wait forever for it.
      graceTimer = setTimeout(finish, 1000);
    });
    child.on("close", finish);
  });
}
