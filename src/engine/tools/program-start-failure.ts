import { closeSync, openSync, readSync, statSync } from "node:fs";
import { promises } from "node:fs";
import { isAbsolute, join, sep } from "node:path";
import type { UnansweredLookups } from "../../runtime/index.js";
import { elfInterpreter } from "./elf-interpreter.js";
import type { HostPathFs } from "./host-path.js";
import { commandSearchDirectories, isExecutableFile } from "./program-path.js";
import type { ShellSandboxMode } from "./shell-sandbox.js";

/**
 * How much of a program's start is read to find its interpreter: the
 * kernel's own bound on a `#!` line (BINPRM_BUF_SIZE), so a line it would
 * not take whole is not named either.
 */
const FIRST_LINE_BYTES = 256;

/** What keeps a program from starting, as ErrorDetail metadata "cause" gives it (ERROR_REASON_PROGRAM_NOT_FOUND). */
export type ProgramStartCause =
  | "not_installed"
  | "not_executable"
  | "interpreter_missing"
  | "interpreter_not_executable"
  | "loader_missing"
  | "no_shebang";

/**
 * How {@link whyProgramCannotStart} asks for real paths: off the event loop
 * (`fs`, node:fs promises by default), each within `timeoutMs`, through the
 * backend's `lookups`, so a file system that does not answer (a hung mount
 * on PATH) is asked for real paths once until it does. The checks before
 * that (finding the program on PATH, reading its first bytes) are still
 * synchronous `stat`/`open`/`read` calls: a hung directory on PATH holds
 * the loop there.
 */
export interface RealPathLookups {
  lookups: UnansweredLookups;
  timeoutMs: number;
  fs?: HostPathFs;
}

/** Whether a path's real path is where the exec cannot see. */
type UnseenTest = (path: string) => boolean;

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
 */
export function programStartProblem(
  program: string,
  mode: ShellSandboxMode,
  isUnseen: UnseenTest = () => false,
): ProgramStartProblem | undefined {
  const file = programFile(program, mode, isUnseen);
  const problem = (cause: ProgramStartCause, message: string): ProgramStartProblem => ({ program, cause, message });
  if (file === undefined) return problem("not_installed", notInstalled(program));
  const installed = `"${program}" is installed on this runtime but`;
  if (!isExecutableFile(file)) return problem("not_executable", `${installed} is not executable`);
  const start = readStart(file);
  const interpreter = start && shebangInterpreter(start);
  if (interpreter !== undefined && isAbsolute(interpreter)) {
    const named = `its interpreter ${JSON.stringify(interpreter)} (named on its first line)`;
    if (!exists(interpreter) || isUnseen(interpreter))
      return problem("interpreter_missing", `${installed} cannot start: ${named} is missing`);
    if (!isExecutableFile(interpreter))
      return problem("interpreter_not_executable", `${installed} cannot start: ${named} is not executable`);
  }
  if (start !== undefined && !isShebang(start) && !start.subarray(0, 4).equals(ELF_MAGIC)) {
    return problem("no_shebang", `${installed} cannot start: it has no #! line and is not a binary (${NO_SHEBANG_HINT})`);
  }
  const loader = start?.subarray(0, 4).equals(ELF_MAGIC) ? elfInterpreter(file) : undefined;
  if (loader !== undefined && isAbsolute(loader) && (!exists(loader) || isUnseen(loader)))
    return problem("loader_missing", `${installed} cannot start: the dynamic loader it needs is missing`);
  return undefined;
}

/** Every program of `programs` (a shell policy's allowed_programs) that cannot start here, with why, in order. */
export function programProblems(programs: readonly string[], mode: ShellSandboxMode): ProgramStartProblem[] {
  return programs.flatMap((program) => programStartProblem(program, mode) ?? []);
}

/**
 * Why an allowed program cannot start, in plain words for the model (and
 * the operator reading the transcript), naming the program. An exec's
 * ENOENT or EACCES does not mean the program is missing: ENOENT for a file
 * that is there means its interpreter or its dynamic loader is missing, and
 * EACCES that it, or its interpreter, is not executable. What its file
 * shows ({@link programStartProblem}) is told first; when it shows nothing,
 * the exec's error `code` (ENOENT, EACCES; undefined before any exec) is.
 * `unseen.paths` are real paths the exec cannot see (the sandbox's covered
 * private paths, the workspace's host path, the host's /tmp): the files it
 * would judge are located through `unseen`'s lookups first, and one whose
 * real path is not had in time is judged as one whose real path cannot be
 * had: as seen.
 */
export async function whyProgramCannotStart(
  program: string,
  code: string | undefined,
  mode: ShellSandboxMode,
  unseen?: { paths: readonly string[] } & RealPathLookups,
): Promise<string> {
  const isUnseen = unseen && unseen.paths.length > 0 ? await unseenTest(program, mode, unseen.paths, unseen) : () => false;
  const problem = programStartProblem(program, mode, isUnseen);
  if (problem) return problem.message;
  const installed = `"${program}" is installed on this runtime but`;
  const file = programFile(program, mode, isUnseen);
  const start = file === undefined ? undefined : readStart(file);
  const interpreter = start && shebangInterpreter(start);
  if (interpreter !== undefined) {
    return `${installed} cannot start: its interpreter ${JSON.stringify(interpreter)} (named on its first line) could not be started (${reason(code)})`;
  }
  if (code === "ENOENT" && start?.subarray(0, 4).equals(ELF_MAGIC))
    return `${installed} cannot start: the dynamic loader it needs is missing`;
  return `${installed} could not be started (${reason(code)})`;
}

/**
 * The file a command naming `program` would run, found as execvp finds it:
 * the first executable regular file of that name on the commands' PATH that
 * the exec can see (it passes over one it may not execute), else the first
 * such file at all, which is then judged "not executable".
 */
function programFile(program: string, mode: ShellSandboxMode, isUnseen: UnseenTest): string | undefined {
  const files = programFiles(program, mode).filter((path) => !isUnseen(path));
  return files.find(isExecutableFile) ?? files[0];
}

/** Every regular file named `program` on the commands' PATH, in order. */
function programFiles(program: string, mode: ShellSandboxMode): string[] {
  return commandSearchDirectories(mode)
    .map((directory) => join(directory, program))
    .filter(isRegularFile);
}

/**
 * Whether a file is unseen, from the real paths of every file the judgment
 * may look at (each copy of the program on PATH, the interpreter or loader
 * each names), asked for before it. A path whose real path cannot be had
 * (missing, unanswered in time, its lookup refused while another is
 * unanswered) is not unseen.
 */
async function unseenTest(
  program: string,
  mode: ShellSandboxMode,
  unseen: readonly string[],
  realPaths: RealPathLookups,
): Promise<UnseenTest> {
  const files = programFiles(program, mode);
  const named = files.flatMap((file) => {
    const start = readStart(file);
    const interpreter = start && shebangInterpreter(start);
    const loader = start?.subarray(0, 4).equals(ELF_MAGIC) ? elfInterpreter(file) : undefined;
    return [interpreter, loader].filter((path): path is string => path !== undefined && isAbsolute(path));
  });
  const paths = [...new Set([...files, ...named])];
  const real = new Map<string, string | undefined>();
  for (const path of paths) real.set(path, await realPathWithin(path, realPaths));
  return (path) => {
    const found = real.get(path);
    return (
      found !== undefined && unseen.some((hidden) => found === hidden || found.startsWith(hidden.endsWith(sep) ? hidden : hidden + sep))
    );
  };
}

/** The real path of `path`, or undefined when it cannot be had (within the deadline, or asked now). */
async function realPathWithin(path: string, { lookups, timeoutMs, fs = promises }: RealPathLookups): Promise<string | undefined> {
  if (lookups.isUnanswered(path) || lookups.full() !== undefined) return undefined;
  return lookups.within(path, fs.realpath(path), Date.now() + timeoutMs).catch(() => undefined);
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

function reason(code: string | undefined): string {
  if (code === "ENOENT") return "a file it needs is missing";
  if (code === "EACCES") return "permission denied";
  return code ?? "unknown error";
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

function isRegularFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The first {@link FIRST_LINE_BYTES} of `path`, or undefined when it cannot be read (execute-only, say). */
function readStart(path: string): Buffer | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const buffer = Buffer.alloc(FIRST_LINE_BYTES);
    return buffer.subarray(0, readSync(fd, buffer, 0, FIRST_LINE_BYTES, 0));
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
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
