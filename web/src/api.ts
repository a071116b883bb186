import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { accessTokenInterceptor } from "./access-token.js";

/** The generated clients the console uses, all talking to the Backend that served the page. */
export interface Api {
  registry: Client<typeof RuntimeRegistry>;
  catalog: Client<typeof WorkerCatalog>;
  interaction: Client<typeof WorkerInteraction>;
  observation: Client<typeof WorkerObservation>;
}

/**
 * Connect protocol, binary, same origin: the browser only ever talks to the
 * Backend, never to a runtime (it never learns their addresses). Calls carry
 * the tab's access token, when the Backend asked for one.
 */
export function createApi(baseUrl: string = location.origin): Api {
  const transport = createConnectTransport({ baseUrl, useBinaryFormat: true, interceptors: [accessTokenInterceptor] });
  return {
    registry: createClient(RuntimeRegistry, transport),
    catalog: createClient(WorkerCatalog, transport),
    interaction: createClient(WorkerInteraction, transport),
    observation: createClient(WorkerObservation, transport),
  };
}
