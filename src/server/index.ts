/** The network server around a Runtime: routes, health, reflection, auth, bootstrap. */
export { startRuntimeServer, isLoopback, ServerConfigError, type RuntimeServer, type RuntimeServerOptions } from "./server.js";
export { createRoutes, createErrorInterceptor, reflectionRegistry, SERVED_SERVICES, UNTRACED_SERVICES } from "./routes.js";
export { createHealthService } from "./health.js";
export { createReflectionServices } from "./reflection.js";
export { toConnectError } from "./error-mapping.js";
/** Per-request log context (request id, worker and run ids) and the interceptor that sets it and logs each RPC. */
export { currentLogContext, runWithLogContext, withoutLogContext, type LogContext } from "./log-context.js";
export { createLoggingInterceptor, REQUEST_ID_HEADER } from "./rpc-logging.js";
