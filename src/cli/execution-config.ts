import { statSync } from "node:fs";
import { basename, resolve } from "node:path";
import { backendConfigTokenFiles } from "../backend/index.js";
import type { ExecutionBackend } from "../runtime/index.js";
import {
  createOpenAIBackend,
  DEFAULT_MODEL,
  HiddenPathError,
  httpUrl,
  loadProfilesFile,
  OpenAIConfigError,
  openAIBackendOptionsFromEnv,
  ProfileConfigError,
  SETTING_BOUNDS,
  type OpenAIBackendOptions,
} from "../engine/index.js";

/**
 * Flags of `serve` and `backend` naming files and directories that hold the
 * process's secrets or every worker's data; sandboxed commands must not see
 * them (ShellSandboxOptions.hiddenPaths), nor the workspace roots.
 */
const PRIVATE_PATH_FLAGS = ["secrets-file", "token-file", "tls-key", "data-dir", "config", "discover-token-file"] as const;

/** Flags of `serve` that configure execution (and the private paths the sandbox hides). */
export interface ExecutionFlags extends Partial<Record<(typeof PRIVATE_PATH_FLAGS)[number], string>> {
  "workspace-root"?: string[];
  "openai-base-url"?: string;
  "openai-model"?: string;
  "openai-keyless"?: boolean;
  "openai-stream-idle-timeout-ms"?: string;
  "openai-max-answer-bytes"?: string;
  "openai-retry-budget-ms"?: string;
  profiles?: string;
  "allow-unsandboxed-shell"?: boolean;
}

/** The `util.parseArgs` options of {@link ExecutionFlags}, shared by `serve` and `backend`. */
export const EXECUTION_OPTIONS = {
  "workspace-root": { type: "string", multiple: true },
  "openai-base-url": { type: "string" },
  "openai-model": { type: "string" },
  "openai-keyless": { type: "boolean", default: false },
  "openai-stream-idle-timeout-ms": { type: "string" },
  "openai-max-answer-bytes": { type: "string" },
  "openai-retry-budget-ms": { type: "string" },
  profiles: { type: "string" },
  "allow-unsandboxed-shell": { type: "boolean", default: false },
} as const;

/** Usage lines for {@link ExecutionFlags}. */
export const EXECUTION_USAGE = `  --workspace-root [NAME=]DIR  allow worker workspaces under DIR (repeatable; NAME defaults to
                 DIR's base name; roots may not overlap, symlinks resolved)
  --openai-base-url URL  OpenAI-compatible server (else OPENAI_BASE_URL, else api.openai.com);
                 the key is read only from OPENAI_API_KEY
  --openai-model MODEL   model of profiles that name none (else OPENAI_MODEL, else ${DEFAULT_MODEL})
  --openai-keyless       the server needs no key (local Ollama, llama.cpp, LM Studio, vLLM; else
                 OPENAI_KEYLESS=1)
  OPENAI_REQUEST_TIMEOUT_MS  how long a request may wait for the provider's answer to begin (no
                 flag; default 60000; ${SETTING_BOUNDS.requestTimeoutMs.min}-${SETTING_BOUNDS.requestTimeoutMs.max})
  --openai-stream-idle-timeout-ms MS  silence after which a provider stream counts as cut and
                 is continued (else OPENAI_STREAM_IDLE_TIMEOUT_MS, else 120000; ${SETTING_BOUNDS.streamIdleTimeoutMs.min}-${SETTING_BOUNDS.streamIdleTimeoutMs.max})
  --openai-max-answer-bytes N  largest answer plus reasoning of one model turn; past it the run
                 fails LIMIT_EXCEEDED (else OPENAI_MAX_ANSWER_BYTES, else 1048576; ${SETTING_BOUNDS.maxAnswerBytes.min}-${SETTING_BOUNDS.maxAnswerBytes.max})
  --openai-retry-budget-ms MS  total time one run may spend retrying provider errors (else
                 OPENAI_RETRY_BUDGET_MS, else 60000; ${SETTING_BOUNDS.retryBudgetMs.min}-${SETTING_BOUNDS.retryBudgetMs.max})
                 Profiles may set lower values (retry_budget_ms, stream_idle_timeout_ms, max_answer_bytes).
  --profiles FILE        extra profiles, JSON: {"profiles": [{"name": ..., "model": ..., ...}]}
  --allow-unsandboxed-shell  offer shell.exec even where bubblewrap is unavailable: commands then run
                 as this process's user, unisolated (GetRuntime shows shell_sandbox "none")`;

/** Thrown for an execution flag the user must fix. */
export class ExecutionConfigError extends Error {
  override readonly name = "ExecutionConfigError";
}

/**
 * Builds the OpenAI backend from the environment plus flags (flags win).
 * The API key is never a flag: command lines are visible in `ps`.
 */
export async function backendFromFlags(flags: ExecutionFlags, env: NodeJS.ProcessEnv = process.env): Promise<ExecutionBackend> {
  try {
    const options = openAIBackendOptionsFromEnv(withoutFlagged(env, flags));
    if (flags["openai-base-url"] !== undefined) options.baseURL = httpUrl("--openai-base-url", flags["openai-base-url"]);
    if (flags["openai-model"] !== undefined) options.defaultModel = flags["openai-model"];
    if (flags["openai-keyless"]) options.keyless = true;
    if (flags["allow-unsandboxed-shell"]) options.allowUnsandboxedShell = true;
    // Other workers' workspaces too: a command's own workspace is bound back over its hidden root.
    const roots = Object.values(workspaceRootsFromFlags(flags["workspace-root"]));
    // And the remote runtimes' bearer tokens a backend's --config names.
    const tokens = flags.config !== undefined ? backendConfigTokenFiles(flags.config) : [];
    const hidden = [...PRIVATE_PATH_FLAGS.flatMap((flag) => flags[flag] ?? []), ...tokens, ...roots];
    if (hidden.length > 0) options.hiddenPaths = hidden.map((path) => resolve(path));
    applyEngineSettings(options, flags);
    if (flags.profiles !== undefined) {
      options.profiles = await loadProfilesFile(flags.profiles, options.defaultModel ?? DEFAULT_MODEL);
    }
    // Its private paths are located when the runtime readies it, within --host-path-timeout-ms (hostedRuntime).
    return createOpenAIBackend(options);
  } catch (error) {
    if (error instanceof ProfileConfigError || error instanceof OpenAIConfigError || error instanceof HiddenPathError) {
      throw new ExecutionConfigError(error.message);
    }
    if (error instanceof Error && "code" in error) {
      throw new ExecutionConfigError(`cannot read --profiles: ${String(error.code)}`);
    }
    throw error;
  }
}

/**
 * What the engine reads from the environment, less the variables a flag
 * overrides: the flag wins, so a bad value under it is not an error.
 */
function withoutFlagged(env: NodeJS.ProcessEnv, flags: ExecutionFlags): NodeJS.ProcessEnv {
  const overridden: Record<string, boolean> = {
    OPENAI_BASE_URL: flags["openai-base-url"] !== undefined,
    OPENAI_KEYLESS: flags["openai-keyless"] === true,
    OPENAI_STREAM_IDLE_TIMEOUT_MS: flags["openai-stream-idle-timeout-ms"] !== undefined,
    OPENAI_MAX_ANSWER_BYTES: flags["openai-max-answer-bytes"] !== undefined,
    OPENAI_RETRY_BUDGET_MS: flags["openai-retry-budget-ms"] !== undefined,
  };
  return Object.fromEntries(Object.entries(env).filter(([name]) => !overridden[name]));
}

/**
 * Applies the engine settings flags over what the environment gave, then
 * checks the result against {@link SETTING_BOUNDS}, so a bad value stops
 * start-up instead of surfacing as a stalled or failing run.
 */
function applyEngineSettings(options: OpenAIBackendOptions, flags: ExecutionFlags): void {
  const idle = flagValue(flags, "openai-stream-idle-timeout-ms");
  if (idle !== undefined) options.streamIdleTimeoutMs = idle;
  const answer = flagValue(flags, "openai-max-answer-bytes");
  if (answer !== undefined) options.maxAnswerBytes = answer;
  const budget = flagValue(flags, "openai-retry-budget-ms");
  if (budget !== undefined) options.retry = { ...options.retry, budgetMs: budget };
  checkBound("--openai-stream-idle-timeout-ms", idle, SETTING_BOUNDS.streamIdleTimeoutMs);
  checkBound("--openai-max-answer-bytes", answer, SETTING_BOUNDS.maxAnswerBytes);
  checkBound("--openai-retry-budget-ms", budget, SETTING_BOUNDS.retryBudgetMs);
}

/** An engine setting's flag as a whole number (its variable is the engine's to read). */
function flagValue(
  flags: ExecutionFlags,
  flag: "openai-stream-idle-timeout-ms" | "openai-max-answer-bytes" | "openai-retry-budget-ms",
): number | undefined {
  const value = flags[flag];
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new ExecutionConfigError(`--${flag} must be a whole number, not "${value.slice(0, 64)}"`);
  }
  return Number(value);
}

function checkBound(what: string, value: number | undefined, bound: { min: number; max: number }): void {
  if (value === undefined || (value >= bound.min && value <= bound.max)) return;
  throw new ExecutionConfigError(`${what} must be between ${bound.min} and ${bound.max}, not ${value}`);
}

/**
 * Parses repeated `--workspace-root [NAME=]DIR` into name → absolute
 * directory. That roots lie apart on the host (symlinks resolved, as the
 * tools follow them) is createRuntime's one check (WorkspaceRootsError),
 * which `serve` and `backend` make a usage error.
 */
export function workspaceRootsFromFlags(values: readonly string[] | undefined): Record<string, string> {
  const roots: Record<string, string> = {};
  for (const value of values ?? []) {
    const eq = value.indexOf("=");
    const dir = resolve(eq > 0 ? value.slice(eq + 1) : value);
    const name = eq > 0 ? value.slice(0, eq) : basename(dir);
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
      throw new ExecutionConfigError(`--workspace-root name "${name}" must be 1-64 of [A-Za-z0-9._-]`);
    }
    if (Object.hasOwn(roots, name)) throw new ExecutionConfigError(`--workspace-root name "${name}" is used twice`);
    if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
      throw new ExecutionConfigError(`--workspace-root ${dir} is not a directory`);
    }
    roots[name] = dir;
  }
  return roots;
}
