import type { DescMethodServerStreaming, DescMethodUnary } from "@bufbuild/protobuf";
import type { ConnectRouter, ConnectRouterOptions, MethodImpl } from "@connectrpc/connect";
import { validateUniversalHandlerOptions, type UniversalServerRequest } from "@connectrpc/connect/protocol";
import { parseContentType } from "@connectrpc/connect/protocol-grpc";
import type * as http2 from "node:http2";
import type { Logger } from "../runtime/index.js";
import { createStreamHandler, type StreamImpl } from "./grpc-stream-writer.js";
import { createUnaryHandler } from "./grpc-unary-call.js";

/**
 * Unary and server-streaming calls over binary gRPC on HTTP/2 (what the
 * Backend, the CLI and grpcurl speak) are answered by the server's own
 * handlers (grpc-unary-call.ts, grpc-stream-writer.ts) instead of
 * connect-node's pipeline; everything else (JSON gRPC, gRPC-Web, Connect,
 * HTTP/1.1) keeps connect's path. The request side, the interceptors and
 * the handler context stay connect's own (see grpc-call-setup.ts).
 */
export interface GrpcDirectMethods {
  /** The handler for a request, when it is a unary or server-streaming call over binary gRPC on HTTP/2; undefined otherwise. */
  handlerFor(path: string, request: { method?: string | undefined; headers: Record<string, unknown> }): GrpcCallHandler | undefined;
}

/** Serves one call; never rejects (failures end the call with an error status or are logged). */
export type GrpcCallHandler = (request: UniversalServerRequest, response: http2.Http2ServerResponse) => Promise<void>;

/**
 * Wraps `router.service` so every unary and server-streaming method
 * registered afterwards (without per-service options) gets a direct
 * handler; call before the routes register their services.
 */
export function captureGrpcDirectMethods(router: ConnectRouter, routerOptions: ConnectRouterOptions, logger: Logger): GrpcDirectMethods {
  const options = validateUniversalHandlerOptions(routerOptions);
  const interceptors = routerOptions.interceptors ?? [];
  const handlers = new Map<string, GrpcCallHandler>();
  const register = router.service.bind(router);
  const service: ConnectRouter["service"] = (desc, implementation, serviceOptions) => {
    if (serviceOptions === undefined) {
      for (const method of desc.methods) {
        const impl = (implementation as Record<string, unknown>)[method.localName];
        if (typeof impl !== "function") continue;
        const bound = impl.bind(implementation) as (...args: unknown[]) => unknown;
        const path = `/${desc.typeName}/${method.name}`;
        if (method.methodKind === "unary") {
          handlers.set(
            path,
            createUnaryHandler(desc, method as DescMethodUnary, bound as MethodImpl<DescMethodUnary>, options, interceptors, logger),
          );
        } else if (method.methodKind === "server_streaming") {
          handlers.set(
            path,
            createStreamHandler(desc, method as DescMethodServerStreaming, bound as StreamImpl, options, interceptors, logger),
          );
        }
      }
    }
    register(desc, implementation, serviceOptions);
    return router;
  };
  router.service = service;
  return {
    handlerFor(path, request) {
      const handler = handlers.get(path);
      if (!handler || request.method !== "POST") return undefined;
      const type = parseContentType(String(request.headers["content-type"] ?? ""));
      return type?.binary ? handler : undefined;
    },
  };
}
