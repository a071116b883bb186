#!/usr/bin/env node
import { CLIENT_COMMAND_NAMES } from "./client/command-names.js";
import { commandFirst } from "./leading-options.js";
import type { ShutdownOutcome } from "./server-shutdown.js";

/**
 * Set once a server (`serve`, `backend`) has stopped: it has closed all it
 * owns (or failed to, and said so), so nothing left (an exporter waiting on
 * a hung trace collector) may keep the process past its termination grace
 * period.
 */
let serverStopped = false;

/**
 * A stopped server's exit code: 1 when its shutdown failed (server-shutdown.ts), so a supervisor knows.
 * One whose store writes did not settle ends here with SIGKILL: Node's exit joins its I/O threads, and
 * a write hung in the kernel holds one forever (measured with a FIFO), so exiting would never end.
 */
function stoppedWith(outcome: ShutdownOutcome | undefined): number {
  if (outcome === "unsettled") process.kill(process.pid, "SIGKILL");
  serverStopped = outcome !== undefined;
  return outcome === "failed" ? 1 : 0;
}

/**
 * A command line that names no command to run (exit 2), printed as the
 * client prints its usage errors: one JSON line on stderr when argv asks
 * for `--output json`, so a script reading stderr as JSON never meets text.
 */
async function commandLineMistake(argv: readonly string[], message: string): Promise<number> {
  const { asksForJson, reportCommandLineError } = await import("./client/command-context.js");
  return reportCommandLineError(new Error(message), asksForJson(argv));
}

/** The `worker-runtime` command line. */
async function main(argv: string[]): Promise<number> {
  if (argv[0] === "--version" || argv[0] === "version") {
    const { RUNTIME_VERSION } = await import("../runtime/index.js");
    process.stdout.write(`worker-runtime ${RUNTIME_VERSION}\n`);
    return 0;
  }
  if (argv[0]?.startsWith("-") && argv[0] !== "--help") {
    const reordered = commandFirst(argv);
    if ("error" in reordered) return commandLineMistake(argv, reordered.error);
    argv = reordered.argv;
  }
  const [command, ...rest] = argv;
  // Client commands load only the generated clients, not what `serve` needs (server, store, engine): they start faster.
  if (command !== undefined && CLIENT_COMMAND_NAMES.includes(command)) {
    const { runClientCommand } = await import("./client/index.js");
    return runClientCommand(argv);
  }
  const { serve, SERVE_USAGE, UsageError } = await import("./serve.js");
  try {
    switch (command) {
      case "serve":
        return stoppedWith(await serve(rest));
      case "backend": {
        const { backend } = await import("./backend.js");
        return stoppedWith(await backend(rest));
      }
      case undefined:
      case "help":
      case "--help": {
        const { BACKEND_USAGE } = await import("./backend.js");
        const { CLIENT_COMMANDS_USAGE } = await import("./client/index.js");
        const { GLOBAL_USAGE } = await import("./client/command-context.js");
        const help = `worker-runtime [global options] <command> [options]    (worker-runtime --version prints the version)\n\ncommands:\n  serve     run a standalone runtime server\n  backend   run a backend: an embedded runtime plus remote ones behind one API\n\n${SERVE_USAGE}\n\n${BACKEND_USAGE}\n\n${CLIENT_COMMANDS_USAGE}\n\n${GLOBAL_USAGE}\n`;
        if (command !== undefined) {
          process.stdout.write(help);
          return 0;
        }
        // No command is a bad command line (exit 2), as the README's exit codes say; the help goes where errors go.
        process.stderr.write(`worker-runtime: no command given\n${help}`);
        return 2;
      }
      default:
        return commandLineMistake(argv, `unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))) {
      const { ambiguousValueMessage } = await import("./ambiguous-value.js");
      process.stderr.write(`worker-runtime: ${ambiguousValueMessage(error, rest) ?? error.message}\n`);
      return 2;
    }
    process.stderr.write(`worker-runtime: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
if (serverStopped) process.exit();
