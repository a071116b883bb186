import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { startCli, type CliProcess } from "../support/cli-process.js";
import { clientsFor, type Clients } from "../support/harness.js";

/** A `worker-runtime serve` process with a file store, restartable on the same port and data dir. */
export interface RuntimeProcess {
  readonly runtimeId: string;
  readonly dataDir: string;
  /** "host:port", fixed after the first start. */
  address: string;
  cli: CliProcess;
  /** SIGKILLs the process and waits for it to exit. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data dir. */
  restart(): Promise<void>;
}

/** Options of a runtime process. */
export interface RuntimeProcessInit {
  runtimeId: string;
  dataDir: string;
  tokenFile: string;
  /** The fake OpenAI server's base URL. */
  openaiBaseUrl: string;
}

/** Every process a test file started, for cleanup. */
export const started: CliProcess[] = [];

export async function startRuntimeProcess(init: RuntimeProcessInit): Promise<RuntimeProcess> {
  const args = (port: string): string[] => [
    "serve",
    "--port",
    port,
    "--runtime-id",
    init.runtimeId,
    "--data-dir",
    init.dataDir,
    "--token-file",
    init.tokenFile,
    "--openai-base-url",
    init.openaiBaseUrl,
    "--openai-keyless",
  ];
  const launch = (port: string): CliProcess => {
    const cli = startCli(args(port));
    started.push(cli);
    return cli;
  };
  const first = launch("0");
  const process: RuntimeProcess = {
    runtimeId: init.runtimeId,
    dataDir: init.dataDir,
    address: (await first.listening).h2c,
    cli: first,
    async kill() {
      process.cli.kill();
      await process.cli.exited;
    },
    async restart() {
      process.cli = launch(process.address.split(":").pop() ?? "0");
      await process.cli.listening;
    },
  };
  return process;
}

/** Generated clients (four services plus the registry) over one HTTP/2 session. */
export interface ClientSet extends Clients {
  registry: Client<typeof RuntimeRegistry>;
  close(): void;
}

/** gRPC clients to `address`, with a bearer token and extra interceptors (e.g. a leak recorder). */
export function connectTo(address: string, token: string | undefined, interceptors: Interceptor[] = []): ClientSet {
  const baseUrl = `http://${address}`;
  const sessionManager = new Http2SessionManager(baseUrl);
  const bearer: Interceptor = (next) => (request) => {
    if (token !== undefined) request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const transport = createGrpcTransport({ baseUrl, sessionManager, interceptors: [...interceptors, bearer] });
  return { ...clientsFor(transport), registry: createClient(RuntimeRegistry, transport), close: () => sessionManager.abort() };
}

/**
 * One `serve` process per id, each on its own file store under `dir/<id>`
 * and requiring its token from `tokens` (written to `dir/<id>.token`).
 */
export async function startTokenedRuntimes(
  dir: string,
  ids: readonly string[],
  tokens: Record<string, string>,
  openaiBaseUrl: string,
): Promise<RuntimeProcess[]> {
  for (const id of ids) await writeFile(join(dir, `${id}.token`), `${tokens[id]}\n`);
  return Promise.all(
    ids.map((runtimeId) =>
      startRuntimeProcess({ runtimeId, dataDir: join(dir, runtimeId), tokenFile: join(dir, `${runtimeId}.token`), openaiBaseUrl }),
    ),
  );
}
