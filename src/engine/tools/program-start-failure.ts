import { isAbsolute, join, sep } from "node:path";
import { PROGRAM_CHECK_UNANSWERED } from "../../runtime/index.js";
import { type EngineLookups, LookupUnanswered, lookUp } from "./host-lookups.js";
import { ProgramFiles } from "./program-files.js";
import { commandSearchDirectories } from "./program-path.js";
import type { ShellSandboxMode } from "./shell-sandbox.js";

/** What keeps a program from starting, as ErrorDetail metadata "cause" gives it (ERROR_REASON_PROGRAM_NOT_FOUND). */
export type ProgramStartCause =
  | "not_installed"
  | "not_executable"
  | "interpreter_missing"
  | "interpreter_not_executable"
  | "loader_missing"
  | "no_shebang"
  /** Not known: a directory it would be looked up in did not answer in time (PROGRAM_CHECK_UNANSWERED). */
  | typeof PROGRAM_CHECK_UNANSWERED;

/** Whether a path's real path is where the exec cannot see. */
type UnseenTest = (path: string) => Promise<boolean>;

/** A program that cannot start, with why in plain words naming it. */
export interface ProgramStartProblem {
  program: string;
  cause: ProgramStartCause;
  message: string;
}

/**
 * What keeps an allowed program from starting that can be seen in its file
 * before any exec, or undefined when nothing can: the one place that knows
 * the causes, asked by CreateWorker (ExecutionBackend.programProblems),
 * before each command starts, and after an exec failed
 * ({@link whyProgramCannotStart}). The file is the one the exec runs: the
 * first executable regular file of that name on the PATH commands get (the
 * one `which` shows), else the first regular one; none is "not installed"
 * (never there, or removed since). A file that is there may not
 * be executable, or the interpreter its `#!` line names (read bounded) or
 * the dynamic loader it names (ELF PT_INTERP) may be missing or not
 * executable: said as "not installed", these sent the operator looking for
 * a program that was there. A file that neither starts with `#!` nor is
 * an ELF binary is refused too: the kernel will not run it (ENOEXEC), and
 * glibc's execvp (libuv's spawn, bwrap) then runs it with /bin/sh, a shell
 * its author never chose (an empty file "succeeds" doing nothing). A file
 * that cannot be read (execute-only) is not judged. `isUnseen` tells a
 * file the exec cannot see (whyProgramCannotStart): it counts as absent.
 *
 * Every file is asked off the event loop through `host`
 * (program-files.ts), the whole check by one `deadline` (the operator's
 * timeout from now, unless a caller checking more shares its own): a
 * directory that does not answer by then, before the file is found, leaves
 * the program unknown (PROGRAM_CHECK_UNANSWERED), not "not installed": the
 * exec would hang there too.
 */
export async function programStartProblem(
  program: string,
  mode: ShellSandboxMode,
  host: EngineLookups,
  deadline: number = Date.now() + host.timeoutMs,
): Promise<ProgramStartProblem | undefined> {
  return (await judged(program, mode, new ProgramFiles(host, deadline), host.timeoutMs, async () => false)).problem;
}

/**
 * Every program of `programs` (a shell policy's allowed_programs) that
 * cannot start here, with why, in order: one check (CreateWorker's), so one
 * deadline for them all, the operator's timeout.
 */
export async function programProblems(
  programs: readonly string[],
  mode: ShellSandboxMode,
  host: EngineLookups,
): Promise<ProgramStartProblem[]> {
  const deadline = Date.now() + host.timeoutMs;
  const problems: ProgramStartProblem[] = [];
  for (const program of programs) {
    const problem = await programStartProblem(program, mode, host, deadline);
    if (problem) problems.push(problem);
  }
  return problems;
}

/**
 * Why an allowed program cannot start, in plain words for the model (and
 * the operator reading the transcript), naming the program. An exec's
 * ENOENT or EACCES does not mean the program is missing: ENOENT for a file
 * that is there means its interpreter or its dynamic loader is missing, and
 * EACCES that it, or its interpreter, is not executable. What its file
 * shows ({@link programStartProblem}) is told first; when it shows nothing,
 * the exec's error `code` (ENOENT, EACCES; undefined before any exec) is.
 * `unseen` are real paths the exec cannot see (the sandbox's covered
 * private paths, the workspace's host path, the host's /tmp): the files it
 * would judge are located through `host` first, and one whose real path is
 * not had in time is judged as one whose real path cannot be had: as seen.
 * One deadline, the operator's timeout, holds for all it asks.
 */
export async function whyProgramCannotStart(
  program: string,
  code: string | undefined,
  mode: ShellSandboxMode,
  host: EngineLookups,
  unseen: readonly string[] = [],
): Promise<string> {
  const files = new ProgramFiles(host, Date.now() + host.timeoutMs);
  const isUnseen = unseen.length > 0 ? unseenTest(unseen, host, files.deadline) : async () => false;
  const { problem, start } = await judged(program, mode, files, host.timeoutMs, isUnseen);
  if (problem) return problem.message;
  const installed = `"${program}" is installed on this runtime but`;
  const interpreter = start && shebangInterpreter(start);
  if (interpreter !== undefined) {
    return `${installed} cannot start: its interpreter ${JSON.stringify(interpreter)} (named on its first line) could not be started (${reason(code)})`;
  }
  if (code === "ENOENT" && start !== undefined && isElf(start)) return `${installed} cannot start: the dynamic loader it needs is missing`;
  return `${installed} could not be started (${reason(code)})`;
}

/** {@link programStartProblem}'s answer, with the first bytes of the file judged (when read). */
async function judged(
  program: string,
  mode: ShellSandboxMode,
  files: ProgramFiles,
  timeoutMs: number,
  isUnseen: UnseenTest,
): Promise<{ problem?: ProgramStartProblem; start?: Buffer }> {
  try {
    return await judge(program, mode, files, isUnseen);
  } catch (error) {
    if (!(error instanceof LookupUnanswered)) throw error;
    const message = `"${program}" could not be checked on this runtime: ${uncheckedWhy(error.outcome, timeoutMs)}; try again once it answers`;
    return { problem: { program, cause: PROGRAM_CHECK_UNANSWERED, message } };
  }
}

/** Why a program check found no answer in time, in words for the model and the operator (no host path). */
function uncheckedWhy(outcome: LookupUnanswered["outcome"], timeoutMs: number): string {
  switch (outcome.kind) {
    case "host_full":
      return outcome.unanswered === 1
        ? "an earlier lookup on its file systems is still unanswered"
        : `${outcome.unanswered} earlier lookups on its file systems are still unanswered`;
    case "waited":
      return `the check's ${timeoutMs} ms ran out while it waited behind an earlier lookup, still unanswered, of a directory on the PATH its commands get`;
    case "no_time":
      return `the check's ${timeoutMs} ms ran out on slow directories of the PATH its commands get before it could finish`;
    case "late":
    case "key_unanswered":
      return `a directory on the PATH its commands get did not answer within the check's ${timeoutMs} ms`;
  }
}

async function judge(
  program: string,
  mode: ShellSandboxMode,
  files: ProgramFiles,
  isUnseen: UnseenTest,
): Promise<{ problem?: ProgramStartProblem; start?: Buffer }> {
  const file = await programFile(program, mode, files, isUnseen);
  const problem = (cause: ProgramStartCause, message: string) => ({ problem: { program, cause, message } });
  if (file === undefined) return problem("not_installed", notInstalled(program));
  const installed = `"${program}" is installed on this runtime but`;
  if (!(await files.isExecutableFile(file))) return problem("not_executable", `${installed} is not executable`);
  const start = await files.readStart(file);
  const interpreter = start && shebangInterpreter(start);
  if (interpreter !== undefined && isAbsolute(interpreter)) {
    const named = `its interpreter ${JSON.stringify(interpreter)} (named on its first line)`;
    if (!(await files.exists(interpreter)) || (await isUnseen(interpreter)))
      return problem("interpreter_missing", `${installed} cannot start: ${named} is missing`);
    if (!(await files.isExecutableFile(interpreter)))
      return problem("interpreter_not_executable", `${installed} cannot start: ${named} is not executable`);
  }
  if (start !== undefined && !isShebang(start) && !isElf(start)) {
    return problem("no_shebang", `${installed} cannot start: it has no #! line and is not a binary (${NO_SHEBANG_HINT})`);
  }
  const loader = start !== undefined && isElf(start) ? await files.loaderOf(file) : undefined;
  if (loader !== undefined && isAbsolute(loader) && (!(await files.exists(loader)) || (await isUnseen(loader))))
    return problem("loader_missing", `${installed} cannot start: the dynamic loader it needs is missing`);
  return start !== undefined ? { start } : {};
}

/**
 * The file a command naming `program` would run, found as execvp finds it:
 * the first executable regular file of that name on the commands' PATH that
 * the exec can see (it passes over one it may not execute), else the first
 * such file at all, which is then judged "not executable". The entries
 * after the one it runs are not asked.
 */
async function programFile(
  program: string,
  mode: ShellSandboxMode,
  files: ProgramFiles,
  isUnseen: UnseenTest,
): Promise<string | undefined> {
  let first: string | undefined;
  for (const directory of commandSearchDirectories(mode)) {
    const path = join(directory, program);
    if (!(await files.isRegularFile(path)) || (await isUnseen(path))) continue;
    if (await files.isExecutableFile(path)) return path;
    first ??= path;
  }
  return first;
}

/**
 * Whether a file is unseen, from its real path, asked for (once) when the
 * judgment first looks at it. A path whose real path cannot be had
 * (missing, unanswered in time, its lookup refused while another is
 * unanswered) is not unseen.
 */
function unseenTest(unseen: readonly string[], host: EngineLookups, deadline: number): UnseenTest {
  const real = new Map<string, Promise<string | undefined>>();
  return async (path) => {
    let found = real.get(path);
    if (found === undefined) {
      found = lookUp(host, path, (fs) => fs.realpath(path), deadline).catch(() => undefined);
      real.set(path, found);
    }
    const located = await found;
    return (
      located !== undefined &&
      unseen.some((hidden) => located === hidden || located.startsWith(hidden.endsWith(sep) ? hidden : hidden + sep))
    );
  };
}

/** What the model is told of an allowed program this runtime does not have (the check's words since it was first written). */
function notInstalled(program: string): string {
  return `"${program}" is allowed for this worker but is not installed on this runtime`;
}

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/** What the author of a file without `#!` is told to do. */
const NO_SHEBANG_HINT = "a shell would run it as a script; name its interpreter on a #! first line";

function isShebang(start: Buffer): boolean {
  return start[0] === 0x23 && start[1] === 0x21;
}

function isElf(start: Buffer): boolean {
  return start.subarray(0, 4).equals(ELF_MAGIC);
}

function reason(code: string | undefined): string {
  if (code === "ENOENT") return "a file it needs is missing";
  if (code === "EACCES") return "permission denied";
  return code ?? "unknown error";
}

/**
 * The interpreter a `#!` line names (its first word, split as the kernel
 * splits it: on spaces and tabs only, so a CRLF script's "/bin/sh\r" shows
 * as what it is), if the line ends within the bytes read.
 */
function shebangInterpreter(start: Buffer): string | undefined {
  if (!isShebang(start)) return undefined;
  const end = start.indexOf(0x0a);
  if (end < 0) return undefined;
  const word = start
    .subarray(2, end)
    .toString("utf8")
    .replace(/^[ \t]+/, "")
    .split(/[ \t]/, 1)[0];
  return word === undefined || word === "" ? undefined : word;
}
