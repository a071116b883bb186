#!/usr/bin/env node
import { serve, SERVE_USAGE, UsageError } from "./serve.js";

/** The `worker-runtime` command line. */
async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "serve":
        await serve(rest);
        return 0;
      case undefined:
      case "help":
      case "--help": {
        const { CLIENT_COMMANDS_USAGE } = await import("./client/index.js");
        const { GLOBAL_USAGE } = await import("./client/command-context.js");
        process.stdout.write(
          `worker-runtime <command>\n\ncommands:\n  serve   run a standalone runtime server\n\n${SERVE_USAGE}\n\n${CLIENT_COMMANDS_USAGE}\n\n${GLOBAL_USAGE}\n`,
        );
        return 0;
      }
      default: {
        // The client is loaded only for its commands, so `serve` starts as before.
        const client = await import("./client/index.js");
        if (client.isClientCommand(command)) return await client.runClientCommand(argv);
        process.stderr.write(`worker-runtime: unknown command "${command}"\n`);
        return 2;
      }
    }
  } catch (error) {
    if (error instanceof UsageError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`worker-runtime: ${error.message}\n`);
      return 2;
    }
    process.stderr.write(`worker-runtime: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
