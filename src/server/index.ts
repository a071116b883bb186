/** The network server around a Runtime: routes, health, reflection, auth, bootstrap. */
export {
  DEFAULT_MAX_CONCURRENT_STREAMS,
  startRuntimeServer,
  isLoopback,
  ServerConfigError,
  type RuntimeServer,
  type RuntimeServerOptions,
} from "./server.js";
/** The HTTP/2 keepalive that finds a vanished client, and its defaults (`serve --keepalive-*-ms`). */
export { DEFAULT_KEEPALIVE, type KeepaliveOptions } from "./session-keepalive.js";
export { createRoutes, createErrorInterceptor, reflectionRegistry, SERVED_SERVICES, UNTRACED_SERVICES } from "./routes.js";
export { createHealthService } from "./health.js";
export { createReflectionServices } from "./reflection.js";
export { toConnectError } from "./error-mapping.js";
/** The bearer-token rule the servers, the client CLI and a Backend's AddRuntime share. */
export { isHeaderSafeToken } from "./header-token.js";
/** Whether a call's client reads binary protobuf, so a watch may send it pre-encoded events. */
export { isBinaryRequest } from "./binary-request.js";
/**
 * An RPC's log fields (request id, method), kept in the call's context
 * values and passed on explicitly; the interceptors that set them (and log
 * each RPC).
 */
export { inputOptionsOf, logFieldsOf, rpcLogFields } from "./log-context.js";
export { createLogFieldsInterceptor, createLoggingInterceptor, REQUEST_ID_HEADER } from "./rpc-logging.js";
