import type { ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import {
  type Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
  type HealthCheckResponse,
} from "../../gen/grpc/health/v1/health_pb.js";
import { RuntimeStatus } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import type { Runtime } from "../runtime/index.js";

/** Services whose health reflects store writes (they persist every request). */
const WRITE_SERVICES = new Set([WorkerCatalog.typeName, WorkerInteraction.typeName]);

/**
 * grpc.health.v1: "" and every served service are SERVING while the runtime
 * serves and NOT_SERVING while it drains. When the store cannot write
 * (DEGRADED), the services that must persist requests are NOT_SERVING while
 * the server as a whole stays SERVING, so reads keep working and a probe
 * pointed at WorkerInteraction takes the runtime out of rotation. A Watch
 * ends cleanly once the runtime has closed (after its NOT_SERVING); on an
 * unknown service it sends SERVICE_UNKNOWN and stays open until then.
 */
export function createHealthService(runtime: Runtime, serviceNames: readonly string[]): ServiceImpl<typeof Health> {
  const known = new Set(["", ...serviceNames]);
  const statusOf = (service: string): ServingStatus => {
    if (!known.has(service)) return ServingStatus.SERVICE_UNKNOWN;
    const status = runtime.status;
    if (status === RuntimeStatus.DRAINING) return ServingStatus.NOT_SERVING;
    if (status === RuntimeStatus.DEGRADED && WRITE_SERVICES.has(service)) return ServingStatus.NOT_SERVING;
    return ServingStatus.SERVING;
  };
  return {
    check(request) {
      if (!known.has(request.service)) throw new ConnectError(`unknown service "${request.service.slice(0, 200)}"`, Code.NotFound);
      return create(HealthCheckResponseSchema, { status: statusOf(request.service) });
    },
    // An unknown service gets SERVICE_UNKNOWN and the stream stays open, as the gRPC health
    // protocol says (a service may be registered later; here none is, so nothing more is sent).
    async *watch(request, context): AsyncGenerator<HealthCheckResponse> {
      // A change may come while the generator is parked at `yield` (the
      // transport has not taken the last message yet), when there is no
      // waiter to wake: count changes, and wait only when none is unseen.
      let changes = 0;
      let wake: (() => void) | undefined;
      const notify = (): void => {
        changes++;
        wake?.();
      };
      const unsubscribe = runtime.onStatusChange(notify);
      // Unsubscribe on abort itself: a generator blocked on a write may never resume.
      const onAbort = (): void => {
        unsubscribe();
        notify();
      };
      context.signal.addEventListener("abort", onAbort);
      try {
        let last: ServingStatus | undefined;
        let seen = -1;
        while (!context.signal.aborted) {
          if (seen === changes) {
            // Every change is sent; a closed runtime ends the stream (cleanly, like its watches), so an
            // open Watch (a Backend keeps one per runtime) does not hold the server's close open.
            if (runtime.closed) return;
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
            wake = undefined;
            continue;
          }
          seen = changes;
          const status = statusOf(request.service);
          if (status !== last) {
            last = status;
            yield create(HealthCheckResponseSchema, { status });
          }
        }
      } finally {
        unsubscribe();
        context.signal.removeEventListener("abort", onAbort);
      }
    },
  };
}
