import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Browser } from "playwright-core";
import { launchChromium } from "../support/chromium.js";
import { type CliEntry, type CliProcess, REPO_ROOT, startCli } from "../support/cli-process.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";

/**
 * A workspace holding notes.txt and a profiles file with "careful" (list_files
 * needing approval), in directories `tempDir` makes: what the console tests
 * that approve a tool call start with (`--workspace-root ws=<workspace> --profiles <profiles>`).
 */
export function carefulWorkspace(tempDir: () => string): { workspace: string; profiles: string } {
  const workspace = tempDir();
  writeFileSync(join(workspace, "notes.txt"), "hello");
  const profiles = join(tempDir(), "profiles.json");
  writeFileSync(
    profiles,
    JSON.stringify({ profiles: [{ name: "careful", tools: ["list_files"], approval_required_tools: ["list_files"] }] }),
  );
  return { workspace, profiles };
}

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

/** What {@link startConsoleWithBrowser} starts `npm start` with. */
export interface ConsoleWithBrowserInit {
  /** Prefix of the temp directory `npm start` keeps its state in (--data-dir). */
  dataDirPrefix: string;
  /**
   * Start the fake provider and point the console at it (OPENAI_BASE_URL; default true). Without it
   * the console has an API key only, for tests that never ask the model.
   */
  provider?: boolean;
  /** Further `npm start` arguments (workspace roots, profiles). */
  args?: readonly string[];
}

/** A running `npm start` on a data dir of its own, and headless Chromium to open its console in. */
export interface ConsoleWithBrowser extends ConsoleProcess {
  readonly browser: Browser;
  /** The data dir, removed by close(). */
  readonly dataDir: string;
  /** Closes Chromium (and every page in it), stops `npm start` and waits for it to exit, removes the data dir, stops the provider. */
  close(): Promise<void>;
}

/** A {@link ConsoleWithBrowser} whose model provider is the fake one. */
export interface ConsoleWithProvider extends ConsoleWithBrowser {
  readonly fake: FakeOpenAI;
}

/**
 * The set-up of the console tests that drive one `npm start` in Chromium,
 * instead of each writing its own copy: builds the console, starts the
 * fake provider (unless `provider` is false), starts `npm start` on a
 * fresh data dir (HTTP and gRPC on port 0, OPENAI_API_KEY set) and launches
 * Chromium. `close()` tears all of it down.
 */
export function startConsoleWithBrowser(init: ConsoleWithBrowserInit & { provider: false }): Promise<ConsoleWithBrowser>;
export function startConsoleWithBrowser(init: ConsoleWithBrowserInit): Promise<ConsoleWithProvider>;
export async function startConsoleWithBrowser(init: ConsoleWithBrowserInit): Promise<ConsoleWithBrowser & { fake?: FakeOpenAI }> {
  await buildConsole();
  const fake = init.provider === false ? undefined : await startFakeOpenAI();
  const dataDir = mkdtempSync(join(tmpdir(), init.dataDirPrefix));
  let started: ConsoleProcess | undefined;
  const stop = async (): Promise<void> => {
    started?.cli.kill();
    await started?.cli.exited;
    rmSync(dataDir, { recursive: true, force: true });
    await fake?.close();
  };
  try {
    const env = { OPENAI_API_KEY: "test-key", ...(fake ? { OPENAI_BASE_URL: fake.baseURL } : {}) };
    started = await startConsole(["--port", "0", "--grpc-port", "0", "--data-dir", dataDir, ...(init.args ?? [])], env);
    const browser = await launchChromium();
    return {
      ...started,
      browser,
      dataDir,
      ...(fake ? { fake } : {}),
      async close() {
        await browser.close();
        await stop();
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
