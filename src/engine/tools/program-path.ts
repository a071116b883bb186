import { delimiter, isAbsolute } from "node:path";
import { SANDBOX_PATH, type ShellSandboxMode } from "./shell-sandbox.js";

/**
 * The directories a command's program is looked up in, in order
 * (program-start-failure.ts finds a policy's program there, for the check
 * CreateWorker and run_command make before a command starts, and the file a
 * failed start was).
 * Relative entries would be looked up in the workspace, which the model
 * writes: not a place programs are installed.
 */
export function commandSearchDirectories(mode: ShellSandboxMode): string[] {
  return commandSearchPath(mode)
    .split(delimiter)
    .filter((directory) => isAbsolute(directory));
}

/** The PATH commands get: the sandbox's own, or this process's (commandEnv in shell-tool.ts passes it on). */
function commandSearchPath(mode: ShellSandboxMode): string {
  return mode === "bubblewrap" ? SANDBOX_PATH : (process.env.PATH ?? "");
}
