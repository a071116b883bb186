import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join } from "node:path";
import { SANDBOX_PATH, type ShellSandboxMode } from "./shell-sandbox.js";

/**
 * The programs of `programs` (bare names, as a shell policy's
 * allowed_programs give them) that a command could not start here: none of
 * the directories on the PATH a command gets holds an executable file of
 * that name. A policy may allow a program this host lacks (a bundle serves
 * many runtimes), which otherwise showed only when the model called it, as
 * `spawn X ENOENT` or bwrap's "execvp X: No such file or directory";
 * CreateWorker asks first (ExecutionBackend.missingPrograms) and
 * run_command before it starts one.
 */
export function missingPrograms(programs: readonly string[], mode: ShellSandboxMode): string[] {
  const directories = commandSearchDirectories(mode);
  return programs.filter((program) => !directories.some((directory) => isExecutableFile(join(directory, program))));
}

/**
 * The directories a command's program is looked up in, in order (also
 * program-start-failure.ts's, to find the file a failed start was).
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

/** Whether `path` is a regular file this process may execute. */
export function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
