#!/usr/bin/env node
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { backend } from "../cli/backend.js";
import { UsageError } from "../cli/serve.js";
import { backendArgs } from "./start-args.js";

/** dist/web of this checkout: the same from src/console (tsx) and dist/console (built). */
const BUNDLE_DIR = fileURLToPath(new URL("../../dist/web/", import.meta.url));

/**
 * `npm start`: the Backend with its embedded runtime on the file store,
 * serving the console; prints "console ready at http://..." once it listens.
 */
/** Set once the Backend stopped cleanly (see src/cli/main.ts: then nothing may hold the process). */
let serverStopped = false;

async function start(argv: string[]): Promise<number> {
  if (!existsSync(`${BUNDLE_DIR}index.html`)) {
    process.stderr.write(`worker-runtime: the console is not built (no ${BUNDLE_DIR}index.html): run npm run build\n`);
    return 1;
  }
  try {
    serverStopped = await backend(backendArgs(argv, BUNDLE_DIR));
    return 0;
  } catch (error) {
    const usage =
      error instanceof UsageError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"));
    process.stderr.write(`worker-runtime: ${error instanceof Error ? error.message : String(error)}\n`);
    return usage ? 2 : 1;
  }
}

process.exitCode = await start(process.argv.slice(2));
if (serverStopped) process.exit();
