import { approve, cancel, reject } from "./run-commands.js";
import { chat } from "./chat-command.js";
import { asksForJson, GLOBAL_USAGE, reportCommandLineError } from "./command-context.js";
import { CommandLineError, isCommandLineError } from "./command-line-error.js";
import { ExitCode, type ExitCodeValue } from "./exit-codes.js";
import { runtimesAdd, runtimesRemove, runtimesUpdate } from "./registry-commands.js";
import { runtimeAllocations, runtimeDiagnostics, runtimeInfo, runtimesList } from "./runtime-commands.js";
import { send } from "./send-command.js";
import { transcript } from "./transcript-command.js";
import { watch } from "./watch-command.js";
import { workersCreate, workersDelete, workersGet, workersList, workersStop } from "./workers-commands.js";

/** One subcommand: its arguments in, an exit code out. */
type Command = (argv: string[]) => Promise<ExitCodeValue>;

/** Commands that take a second word (`workers list`). */
const GROUPS: Record<string, Record<string, Command>> = {
  runtime: { info: runtimeInfo, diagnostics: runtimeDiagnostics, allocations: runtimeAllocations },
  runtimes: { list: runtimesList, add: runtimesAdd, update: runtimesUpdate, remove: runtimesRemove },
  workers: { list: workersList, create: workersCreate, get: workersGet, stop: workersStop, delete: workersDelete },
};

const SINGLE: Record<string, Command> = { send, cancel, approve, reject, watch, transcript, chat };

/** The client commands as `worker-runtime --help` lists them. */
export const CLIENT_COMMANDS_USAGE = `client commands (against a runtime or a Backend; each takes --help):
  runtime info | runtime diagnostics | runtime allocations
  runtimes list | runtimes add | runtimes update | runtimes remove   (add/update/remove: a Backend)
  workers list | workers create | workers get | workers stop | workers delete
  send WORKER "TEXT"        stream a reply        cancel WORKER [RUN]
  approve WORKER CALL       reject WORKER CALL    watch WORKER [--from CURSOR]
  transcript WORKER         chat WORKER`;

/**
 * Runs a client command (the part of argv after the bin name). A group
 * without its second word is a usage error listing the group's subcommands.
 */
export async function runClientCommand(argv: string[]): Promise<ExitCodeValue> {
  // `... | head` closes the pipe early: stop quietly, as other command-line tools do.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(ExitCode.OK);
    throw error;
  });
  try {
    return await dispatch(argv);
  } catch (error) {
    // Errors from a server call were reported inside the command; these come before any.
    if (isCommandLineError(error)) return reportCommandLineError(error, asksForJson(argv));
    process.stderr.write(`worker-runtime: ${error instanceof Error ? error.message : String(error)}\n`);
    return ExitCode.FAILURE;
  }
}

async function dispatch(argv: string[]): Promise<ExitCodeValue> {
  const [command = "", ...rest] = argv;
  const single = SINGLE[command];
  if (single) return single(rest);
  const group = GROUPS[command];
  if (!group) throw new Error(`not a client command: ${command}`);
  const [sub = "", ...args] = rest;
  const run = group[sub];
  if (run) return run(args);
  const list = `usage: worker-runtime ${command} <${Object.keys(group).join("|")}> [options]\n\n${GLOBAL_USAGE}`;
  if (sub === "--help" || sub === "-h" || sub === "help") {
    process.stdout.write(`${list}\n`);
    return ExitCode.OK;
  }
  // No subcommand is a bad command line (exit 2, help on stderr), as no command at all is.
  if (sub === "") throw new CommandLineError(`no ${command} command given\n${list}`);
  throw new CommandLineError(`unknown command "${command} ${sub}"\n${list}`);
}
