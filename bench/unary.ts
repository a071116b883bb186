import { create } from "@bufbuild/protobuf";
import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { GetRuntimeResponseSchema, RuntimeManagement } from "../gen/worker_runtime/v1/runtime_management_pb.js";
import { WorkerCatalog } from "../gen/worker_runtime/v1/worker_catalog_pb.js";
import { interleavedMedians, printFigure } from "./support/report.js";
import { openTransport, startBareServer, startRuntimeBenchServer, type BenchProtocol } from "./support/servers.js";

/**
 * Unary overhead: GetWorker through the full runtime server
 * (interceptors, validation, clone) at concurrency 32, against a bare
 * connect-node handler returning a constant at the same concurrency and
 * protocol. Everything the server adds per request shows up in the ratio.
 */
export async function run(): Promise<void> {
  const runtimeServer = await startRuntimeBenchServer({});
  const runtime = runtimeServer.runtime;
  const constant = create(GetRuntimeResponseSchema, { runtime: runtime.getRuntime() });
  const bare = await startBareServer((router: ConnectRouter) => {
    router.service(RuntimeManagement, { getRuntime: () => constant });
  });
  const sessions: (() => void)[] = [];
  try {
    for (const protocol of ["grpc", "connect"] as const satisfies readonly BenchProtocol[]) {
      const runtimeSession = openTransport(runtimeServer.baseUrl, protocol);
      const bareSession = openTransport(bare.baseUrl, protocol);
      sessions.push(runtimeSession.close, bareSession.close);
      const catalog = createClient(WorkerCatalog, runtimeSession.transport);
      const management = createClient(RuntimeManagement, bareSession.transport);
      const { worker } = await catalog.createWorker({ runtimeId: runtime.runtimeId, displayName: "bench", labels: { bench: "unary" } });
      const request = { worker: worker?.ref };
      const rates = await interleavedMedians({
        bare: () => requestsPerSecond(() => management.getRuntime({})),
        getWorker: () => requestsPerSecond(() => catalog.getWorker(request)),
      });
      printFigure(`unary.${protocol}.bare_echo`, rates.bare, "req/s");
      printFigure(`unary.${protocol}.get_worker`, rates.getWorker, "req/s", { ratio: rates.getWorker / rates.bare, target: ">=0.8" });
    }
  } finally {
    for (const close of sessions) close();
    await Promise.all([runtimeServer.close(), bare.close()]);
  }
}

const CONCURRENCY = 32;
const ROUND_MS = 2_500;

/** Keeps CONCURRENCY calls in flight for ROUND_MS and returns completed calls per second. */
async function requestsPerSecond(call: () => Promise<unknown>): Promise<number> {
  let completed = 0;
  const start = performance.now();
  const deadline = start + ROUND_MS;
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline) {
      await call();
      completed++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, loop));
  return completed / ((performance.now() - start) / 1000);
}
