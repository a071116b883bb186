import { fromBinary } from "@bufbuild/protobuf";
import type * as http2 from "node:http2";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { ErrorDetailSchema, type ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { Clients } from "./harness.js";

/**
 * What the tests of a huge request (a runtime's and a Backend's
 * request-bounds tests) read: how long other clients waited meanwhile, and
 * the refusal in a raw gRPC answer's trailers.
 */

/**
 * The longest a grpc.health.v1 Check waited while `during` was in flight:
 * checks are sent one after another until it settles (at least one).
 */
export async function longestHealthWait(clients: Clients, during: Promise<unknown>): Promise<number> {
  let settled = false;
  void during.then(
    () => (settled = true),
    () => (settled = true),
  );
  let longest = 0;
  do {
    const started = performance.now();
    await clients.health.check({});
    longest = Math.max(longest, performance.now() - started);
  } while (!settled);
  return longest;
}

/** A gRPC answer's status code and typed detail, from its trailers. */
export function grpcRefusal(trailers: http2.IncomingHttpHeaders): {
  code: number;
  reason?: ErrorReason;
  metadata?: Record<string, string>;
} {
  const bin = trailers["grpc-status-details-bin"];
  const status = typeof bin === "string" ? fromBinary(StatusSchema, Buffer.from(bin, "base64")) : undefined;
  const any = status?.details.find((d) => d.typeUrl.endsWith("worker_runtime.v1.ErrorDetail"));
  const detail = any ? fromBinary(ErrorDetailSchema, any.value) : undefined;
  return { code: Number(trailers["grpc-status"]), reason: detail?.reason, metadata: detail?.metadata };
}
