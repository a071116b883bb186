#!/usr/bin/env node
import { backend, BACKEND_USAGE } from "./backend.js";
import { serve, SERVE_USAGE, UsageError } from "./serve.js";

/** The `worker-runtime` command line. */
async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "serve":
        await serve(rest);
        return 0;
      case "backend":
        await backend(rest);
        return 0;
      case undefined:
      case "help":
      case "--help":
        process.stdout.write(`worker-runtime <command>\n\ncommands:\n  serve     run a standalone runtime server\n  backend   run a backend: an embedded runtime plus remote ones behind one API\n\n${SERVE_USAGE}\n\n${BACKEND_USAGE}\n`);
        return 0;
      default:
        process.stderr.write(`worker-runtime: unknown command "${command}"\n`);
        return 2;
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
