import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { type CliEntry, type CliProcess, REPO_ROOT, startCli } from "../support/cli-process.js";

/** `npm start`'s entry run from source, exactly as `node dist/console/start.js` runs built. */
export const START_ENTRY: CliEntry = { nodeArgs: ["--import", "tsx", "src/console/start.ts"], cwd: REPO_ROOT };

/** Builds dist/web the way `npm run build` does, so the tests serve the current console. */
export async function buildConsole(): Promise<void> {
  await promisify(execFile)(process.execPath, ["--import", "tsx", "web/build.ts"], { cwd: REPO_ROOT });
}

/** A running `npm start` process and the console's URL it printed. */
export interface ConsoleProcess {
  cli: CliProcess;
  url: string;
  /** "host:port" of the Backend's h2c listener (for test clients that seed data). */
  h2c: string;
}

/** Starts `npm start`'s entry with these arguments and environment; resolves once it prints the console's URL. */
export async function startConsole(args: readonly string[], env: Record<string, string>): Promise<ConsoleProcess> {
  const cli = startCli(args, env, START_ENTRY);
  const listening = await cli.listening;
  const url = await new Promise<string>((resolve, reject) => {
    const check = (): void => {
      const match = /^console ready at (\S+)$/m.exec(cli.stdout());
      if (match?.[1]) resolve(match[1]);
    };
    cli.child.stdout.on("data", check);
    check();
    void cli.exited.then(() => reject(new Error(`npm start exited: ${cli.stderr()}`)));
  });
  return { cli, url, h2c: listening.h2c };
}
