/**
 * The OpenAI-compatible execution backend (SPEC §6.2): what the server wires
 * into the Runtime. Everything else in this folder is internal.
 */
export { createOpenAIBackend, NO_KEY_FOR_BASE_URL_REASON, NO_PROVIDER_REASON } from "./openai-backend.js";
export {
  DEFAULT_MODEL,
  httpUrl,
  OpenAIConfigError,
  openAIBackendOptionsFromEnv,
  SETTING_BOUNDS,
  type OpenAIBackendOptions,
} from "./backend-options.js";
export { companionProfile, loadProfilesFile, ProfileConfigError } from "./profiles.js";
export type { RetryPolicy } from "./retry.js";
export { HiddenPathError } from "./tools/hidden-paths.js";
export { realHostPath } from "./tools/host-path.js";
export { ShellSandboxError } from "./tools/shell-sandbox.js";
export type { ToolLimits } from "./tools/tool-limits.js";
