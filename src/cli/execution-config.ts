import { statSync } from "node:fs";
import { basename, resolve } from "node:path";
import type { ExecutionBackend } from "../runtime/index.js";
import {
  createOpenAIBackend,
  DEFAULT_MODEL,
  loadProfilesFile,
  openAIBackendOptionsFromEnv,
  ProfileConfigError,
} from "../engine/index.js";

/** Flags of `serve` that configure execution. */
export interface ExecutionFlags {
  "workspace-root"?: string[];
  "openai-base-url"?: string;
  "openai-model"?: string;
  "openai-keyless"?: boolean;
  profiles?: string;
}

/** Usage lines for {@link ExecutionFlags}. */
export const EXECUTION_USAGE = `  --workspace-root [NAME=]DIR  allow worker workspaces under DIR (repeatable; NAME defaults to
                 DIR's base name)
  --openai-base-url URL  OpenAI-compatible server (else OPENAI_BASE_URL, else api.openai.com);
                 the key is read only from OPENAI_API_KEY
  --openai-model MODEL   model of profiles that name none (else OPENAI_MODEL, else ${DEFAULT_MODEL})
  --openai-keyless       the server needs no key (local Ollama, llama.cpp, LM Studio, vLLM)
  --profiles FILE        extra profiles, JSON: {"profiles": [{"name": ..., "model": ..., ...}]}`;

/** Thrown for an execution flag the user must fix. */
export class ExecutionConfigError extends Error {
  override readonly name = "ExecutionConfigError";
}

/**
 * Builds the OpenAI backend from the environment plus flags (flags win).
 * The API key is never a flag: command lines are visible in `ps`.
 */
export async function backendFromFlags(flags: ExecutionFlags, env: NodeJS.ProcessEnv = process.env): Promise<ExecutionBackend> {
  const options = openAIBackendOptionsFromEnv(env);
  if (flags["openai-base-url"] !== undefined) options.baseURL = flags["openai-base-url"];
  if (flags["openai-model"] !== undefined) options.defaultModel = flags["openai-model"];
  if (flags["openai-keyless"]) options.keyless = true;
  try {
    if (flags.profiles !== undefined) {
      options.profiles = await loadProfilesFile(flags.profiles, options.defaultModel ?? DEFAULT_MODEL);
    }
    return createOpenAIBackend(options);
  } catch (error) {
    if (error instanceof ProfileConfigError) throw new ExecutionConfigError(error.message);
    if (error instanceof Error && "code" in error) {
      throw new ExecutionConfigError(`cannot read --profiles: ${String(error.code)}`);
    }
    throw error;
  }
}

/** Parses repeated `--workspace-root [NAME=]DIR` into name → absolute directory. */
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
