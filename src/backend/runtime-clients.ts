import type { Client, Transport } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createClient } from "../grpc-client/index.js";

/**
 * The generated clients for one Runtime. The embedded Runtime and remote
 * ones differ only in the transport under them, so every routed call takes
 * the same code path.
 */
export interface RuntimeClients {
  management: Client<typeof RuntimeManagement>;
  catalog: Client<typeof WorkerCatalog>;
  interaction: Client<typeof WorkerInteraction>;
  observation: Client<typeof WorkerObservation>;
  health: Client<typeof Health>;
}

/** Generated clients for every service over one transport (src/grpc-client's createClient: connect's, with leaner server streams). */
export function createRuntimeClients(transport: Transport): RuntimeClients {
  return {
    management: createClient(RuntimeManagement, transport),
    catalog: createClient(WorkerCatalog, transport),
    interaction: createClient(WorkerInteraction, transport),
    observation: createClient(WorkerObservation, transport),
    health: createClient(Health, transport),
  };
}
