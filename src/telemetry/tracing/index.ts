/** Tracing: the Connect interceptors and the switch that loads the SDK (the SDK module itself is loaded on demand). */
export {
  type ClientTracingOptions,
  createClientTracingInterceptor,
  createServerTracingInterceptor,
  type RpcSystem,
  type ServerTracingOptions,
} from "./connect-tracing.js";
export { detached } from "./detached.js";
export { rpcTraceContext, traceContextOf } from "./rpc-trace-context.js";
export { type Tracing, startTracingFromEnv } from "./start-tracing.js";
export { TracingConfigError } from "./tracing-config.js";
export { tracingSdkLoaded } from "./sdk-loaded.js";
