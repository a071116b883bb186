import { create } from "@bufbuild/protobuf";
import { ConnectivitySchema, ConnectivityState, type Connectivity, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { ExecutionOffer } from "./execution-offer.js";

/**
 * One worker's connectivity (SPEC §4.1): the runtime-wide answer, unless
 * that is "not connected" and the backend can run this worker's profile
 * anyway (a bundle profile with its own provider key, resolved from the
 * host's secrets). Workers are told apart here, not in the offer, so a
 * runtime without a key of its own still refuses input to every worker
 * that brings none, with the reason that says what to set.
 */
export function workerConnectivity(offer: ExecutionOffer, worker: Worker): Connectivity {
  // A bundle that cannot be served (damaged, missing, breaking today's rules) stops its workers whatever the keys.
  if (offer.bundleProblemOf(worker) !== undefined) return offer.connectivity(worker);
  const runtimeWide = offer.connectivity();
  const backend = offer.backend;
  if (runtimeWide.state === ConnectivityState.CONNECTED || !backend?.availabilityFor) return runtimeWide;
  let secrets: ReadonlyMap<string, string>;
  try {
    secrets = offer.policyOf(worker).secrets;
  } catch {
    // A secret the host lost since: the profile's key is not there either.
    return runtimeWide;
  }
  const own = backend.availabilityFor(offer.profileOf(worker), secrets);
  return own.available ? create(ConnectivitySchema, { state: ConnectivityState.CONNECTED }) : runtimeWide;
}
