import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const childScript = path.join(path.dirname(fileURLToPath(import.meta.url)), "crash-child.ts");

/** A running crash-child.ts: its process, its h2 address and runtime id, and its exit. */
export interface CrashChild {
  process: ChildProcess;
  address: string;
  runtimeId: string;
  exited: Promise<void>;
}

/**
 * Starts crash-child.ts on a data dir (`args`: its optional segment size and
 * event retention) and waits for its `ready <address> <runtime id>` line.
 */
export async function startCrashChild(dataDir: string, args: string[] = []): Promise<CrashChild> {
  const child = spawn(process.execPath, ["--import", "tsx", childScript, dataDir, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const end = out.indexOf("\n");
      if (end !== -1) resolve(out.slice(0, end));
    });
    child.once("exit", (code) => reject(new Error(`child exited (${code}) before ready: ${stderr}`)));
  });
  const [, address = "", runtimeId = ""] = line.split(" ");
  return { process: child, address, runtimeId, exited };
}
