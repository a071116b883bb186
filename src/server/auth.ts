import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createHash, timingSafeEqual } from "node:crypto";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";

/** Services that stay open without a token, so probes and grpcurl discovery work. */
const OPEN_SERVICES = new Set([Health.typeName, ServerReflection.typeName, ServerReflectionV1Alpha.typeName]);

/**
 * Bearer-token auth for every worker and management RPC. Tokens are compared
 * as SHA-256 digests with timingSafeEqual, so the comparison takes the same
 * time whatever the length or content of the guess.
 */
export function createAuthInterceptor(token: string): Interceptor {
  const expected = createHash("sha256").update(token).digest();
  return (next) => async (request) => {
    if (OPEN_SERVICES.has(request.service.typeName)) return next(request);
    const header = request.header.get("authorization") ?? "";
    const match = /^Bearer (.+)$/i.exec(header);
    const given = createHash("sha256")
      .update(match?.[1] ?? "")
      .digest();
    if (!match || !timingSafeEqual(given, expected)) {
      throw new ConnectError("missing or invalid bearer token", Code.Unauthenticated, undefined, [
        { desc: ErrorDetailSchema, value: { reason: ErrorReason.UNAUTHENTICATED, metadata: {} } },
      ]);
    }
    return next(request);
  };
}
