/**
 * The Backend: one API (the four worker_runtime.v1 services plus
 * RuntimeRegistry) over an embedded Runtime and any number of remote ones,
 * routed by runtime_id through the generated clients.
 */
export { createBackend, BACKEND_SERVICES, type Backend, type BackendOptions, type RemoteRuntimeSpec } from "./backend.js";
export { ConnectionBackoff, type ConnectionBackoffOptions } from "./backoff.js";
export { RuntimeConnection, type ConnectionState } from "./runtime-connection.js";
export { RuntimeDirectory } from "./runtime-directory.js";
export { loadBackendConfig, backendConfigTokenFiles, BackendConfigError, tokenFileReader } from "./backend-config.js";
export { SharedRuntimeWatch, type SharedRuntimeWatchOptions } from "./shared-runtime-watch.js";
export { loadBundleDir, type BundleCatalog } from "./bundle-catalog.js";
export { BundleDir, BUNDLE_DIR_REREAD_INTERVAL_MS, MAX_BUNDLE_VERSIONS, type BundleDirOptions } from "./bundle-dir.js";
export { DnsDiscovery, dnsResolver, type DnsDiscoveryOptions, type DiscoveryResolver, type SrvAnswer } from "./dns-discovery.js";
