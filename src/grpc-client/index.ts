/**
 * The product's client transport: connect-node's gRPC transport with a lean
 * reader for binary server streams (see docs/grpc-client.md).
 */
export { createFastGrpcTransport, type FastGrpcTransportOptions } from "./fast-grpc-transport.js";
export { GuardedSessionManager } from "./guarded-session-manager.js";
export { createClient } from "./create-client.js";
export { speaksTls, transportCause, type TransportCause } from "./transport-cause.js";
