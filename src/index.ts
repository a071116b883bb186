/**
 * worker-runtime's public API. The embeddable core alone is
 * `worker-runtime/runtime` (no server, file store or model client); this
 * entry point adds the pieces a standalone deployment wires around it.
 */
export * from "./runtime/index.js";
export {
  startRuntimeServer,
  createRoutes,
  isLoopback,
  ServerConfigError,
  type RuntimeServer,
  type RuntimeServerOptions,
} from "./server/index.js";
export {
  createFileStore,
  DataDirFormatError,
  DataDirInUseError,
  DataDirNotDirectoryError,
  DataDirNotWritableError,
  StoreCorruptionError,
  type FileStore,
  type FileStoreOptions,
} from "./store/fs/index.js";
export {
  createOpenAIBackend,
  openAIBackendOptionsFromEnv,
  OpenAIConfigError,
  loadProfilesFile,
  companionProfile,
  HiddenPathError,
  ProfileConfigError,
  ShellSandboxError,
  type OpenAIBackendOptions,
} from "./engine/index.js";
