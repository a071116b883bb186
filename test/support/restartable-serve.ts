import type { Http2SessionManager } from "@connectrpc/connect-node";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { type CliProcess, type ListeningLine, startCli } from "./cli-process.js";
import { type Clients, clientsAt } from "./harness.js";

/** A `serve --data-dir` process that a test can SIGKILL and start again on the same directory. */
export interface RestartableServe {
  /** The first process's listening line. */
  listening: ListeningLine;
  /** gRPC clients of the first process. */
  before: Clients;
  /**
   * Stops the running process by `signal` (SIGKILL unless told; SIGTERM drains it, and it must exit 0),
   * starts a new one on the same data dir, and returns its clients.
   */
  restart(signal?: "SIGKILL" | "SIGTERM"): Promise<{ listening: ListeningLine; process: CliProcess; clients: Clients }>;
}

/**
 * Starts `serve --port 0 --data-dir <fresh temp dir> ...extraArgs` with
 * `env`. Every process, session and the directory are handed to `cleanups`
 * (run them in afterEach), so a failed test leaves nothing behind.
 */
export async function startRestartableServe(
  extraArgs: readonly string[],
  env: Record<string, string>,
  cleanups: (() => Promise<void> | void)[],
): Promise<RestartableServe> {
  const dataDir = await mkdtemp(path.join(tmpdir(), "wr-restartable-"));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  const sessions: Http2SessionManager[] = [];
  cleanups.push(() => {
    for (const session of sessions) session.abort();
  });
  const start = () => {
    const cli = startCli(["serve", "--port", "0", "--data-dir", dataDir, ...extraArgs], env);
    cleanups.push(() => cli.kill());
    return cli;
  };
  let running = start();
  const listening = await running.listening;
  return {
    listening,
    before: clientsAt(listening.h2c, "grpc", sessions),
    async restart(signal = "SIGKILL") {
      running.child.kill(signal);
      const exit = await running.exited;
      if (signal === "SIGTERM" && exit.code !== 0)
        throw new Error(`the drained process exited ${JSON.stringify(exit)}: ${running.stderr()}`);
      running = start();
      const next = await running.listening;
      return { listening: next, process: running, clients: clientsAt(next.h2c, "grpc", sessions) };
    },
  };
}
