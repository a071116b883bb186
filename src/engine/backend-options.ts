import type { ShellSandboxOptions } from "./tools/shell-sandbox.js";
import type { Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import type { RetryPolicy } from "./retry.js";
import type { HostFs } from "./tools/host-lookups.js";
import type { ToolLimits } from "./tools/tool-limits.js";

/**
 * Configuration of the OpenAI-compatible backend. Everything is explicit so
 * that embedders and tests never depend on the process environment; the CLI
 * uses {@link openAIBackendOptionsFromEnv} to fill it from `OPENAI_*`.
 */
export interface OpenAIBackendOptions extends ShellSandboxOptions {
  /** Provider API key. Never logged and never placed in error messages. */
  apiKey?: string;
  /** Base URL of an OpenAI-compatible server; unset means api.openai.com. */
  baseURL?: string;
  /**
   * Run without an API key, for local servers (Ollama, llama.cpp, LM Studio,
   * vLLM without auth). Requires `baseURL`, so that a forgotten key never
   * silently sends keyless requests to api.openai.com. No Authorization
   * header is sent.
   */
  keyless?: boolean;
  /** Model of the builtin profile and of profiles that name none. */
  defaultModel?: string;
  /** Extra profiles offered besides the builtin "companion". */
  profiles?: readonly Profile[];
  /** Time allowed until the provider's response headers arrive. */
  requestTimeoutMs?: number;
  /**
   * Longest silence allowed between two stream events before the stream
   * counts as cut (default 120 s). A profile may set a shorter one.
   */
  streamIdleTimeoutMs?: number;
  /**
   * Backoff, and the total time one run may spend retrying (default 60 s;
   * a profile may set a shorter budget).
   */
  retry?: Partial<RetryPolicy>;
  /** How many times one answer may be continued after its stream was cut. */
  maxStreamResumes?: number;
  /** How many committed transcript entries are sent to the model as history. */
  historyLimit?: number;
  /**
   * Largest history sent to the model, in UTF-8 bytes of JSON (default
   * 400 KB): older messages are dropped and oversized ones cut to fit.
   */
  historyMaxBytes?: number;
  /**
   * Largest answer text plus reasoning of one model turn, in UTF-8 bytes
   * (default 1 MiB); beyond it the run fails with LIMIT_EXCEEDED. A profile
   * may set a smaller one.
   */
  maxAnswerBytes?: number;
  /**
   * Largest tool-call arguments of one model turn, all calls together
   * (default 4 MiB: room for a write_file of the 1 MiB default bound, JSON
   * escaped); beyond it the run fails with LIMIT_EXCEEDED.
   */
  maxToolArgumentsBytes?: number;
  /**
   * Most tool calls one model turn may make (default 128); beyond it the
   * run fails with LIMIT_EXCEEDED and none of the turn's calls run. Calls
   * with empty arguments cost nothing against maxToolArgumentsBytes, so
   * without this a looping model could make a turn of any number of calls,
   * each one a transcript entry and a tool run.
   */
  maxToolCallsPerTurn?: number;
  /** Bounds on tool output, file reads and commands. */
  toolLimits?: Partial<ToolLimits>;
  /** Source of randomness for backoff jitter (tests pin it). */
  random?: () => number;
  /**
   * The host's file system as the engine's lookups ask it (private paths,
   * the program check); node:fs promises by default. A test gives one that
   * does not answer, as a hung network mount would not.
   */
  hostFs?: HostFs;
}

/** Model used when neither the profile nor the options name one. */
export const DEFAULT_MODEL = "gpt-4o-mini";

/**
 * Bounds of the settings an operator may change (flags, environment): wide
 * enough for slow local models and long replies, narrow enough that no
 * setting can make a run wait without end or an answer outgrow what one
 * response message can carry (4 MiB by default).
 */
export const SETTING_BOUNDS = {
  requestTimeoutMs: { min: 1_000, max: 3_600_000 },
  streamIdleTimeoutMs: { min: 1_000, max: 3_600_000 },
  maxAnswerBytes: { min: 1_024, max: 3 * 1024 * 1024 },
  retryBudgetMs: { min: 0, max: 3_600_000 },
} as const;

/** An `OPENAI_*` value the engine cannot use; the message names the variable (and never echoes a URL, which can carry a key). */
export class OpenAIConfigError extends Error {
  override readonly name = "OpenAIConfigError";
}

/**
 * Reads provider configuration from the environment: `OPENAI_API_KEY`,
 * `OPENAI_BASE_URL`, `OPENAI_MODEL`, `OPENAI_KEYLESS=1` (local servers),
 * `OPENAI_REQUEST_TIMEOUT_MS`, `OPENAI_RETRY_BUDGET_MS` (0: no retries),
 * `OPENAI_STREAM_IDLE_TIMEOUT_MS` and `OPENAI_MAX_ANSWER_BYTES`. Unset or
 * empty means the default. Anything else that is not a usable value (not a
 * whole number, outside {@link SETTING_BOUNDS}, a base URL that is not
 * http(s), a keyless flag other than 1/0/true/false) throws
 * {@link OpenAIConfigError}: a typo must stop start-up, not quietly become
 * the default.
 */
export function openAIBackendOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): OpenAIBackendOptions {
  const options: OpenAIBackendOptions = {};
  if (env.OPENAI_API_KEY) options.apiKey = env.OPENAI_API_KEY;
  if (env.OPENAI_BASE_URL) options.baseURL = httpUrl("OPENAI_BASE_URL", env.OPENAI_BASE_URL);
  if (env.OPENAI_MODEL) options.defaultModel = env.OPENAI_MODEL;
  if (keylessFlag(env.OPENAI_KEYLESS)) options.keyless = true;
  const timeout = boundedSetting(env, "OPENAI_REQUEST_TIMEOUT_MS", SETTING_BOUNDS.requestTimeoutMs);
  if (timeout !== undefined) options.requestTimeoutMs = timeout;
  const budget = boundedSetting(env, "OPENAI_RETRY_BUDGET_MS", SETTING_BOUNDS.retryBudgetMs);
  if (budget !== undefined) options.retry = { budgetMs: budget };
  const idle = boundedSetting(env, "OPENAI_STREAM_IDLE_TIMEOUT_MS", SETTING_BOUNDS.streamIdleTimeoutMs);
  if (idle !== undefined) options.streamIdleTimeoutMs = idle;
  const answer = boundedSetting(env, "OPENAI_MAX_ANSWER_BYTES", SETTING_BOUNDS.maxAnswerBytes);
  if (answer !== undefined) options.maxAnswerBytes = answer;
  return options;
}

/** A whole-number setting within its bounds; undefined when unset or empty. */
function boundedSetting(env: NodeJS.ProcessEnv, name: string, bound: { min: number; max: number }): number | undefined {
  const value = env[name];
  if (value === undefined || value === "") return undefined;
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed)) {
    throw new OpenAIConfigError(`${name} must be a whole number, not "${value.slice(0, 64)}"`);
  }
  if (parsed < bound.min || parsed > bound.max) {
    throw new OpenAIConfigError(`${name} must be between ${bound.min} and ${bound.max}, not ${parsed}`);
  }
  return parsed;
}

/** 1 or true; the explicit no (0, false, empty) is no; anything else is a typo, not a no. */
function keylessFlag(value: string | undefined): boolean {
  if (value === "1" || value === "true") return true;
  if (value === undefined || value === "" || value === "0" || value === "false") return false;
  throw new OpenAIConfigError(`OPENAI_KEYLESS must be 1 or 0 (or true or false), not "${value.slice(0, 64)}"`);
}

/** A URL the SDK can call. The value is not echoed: a URL can carry a key. */
export function httpUrl(name: string, url: string): string {
  let protocol = "";
  try {
    protocol = new URL(url).protocol;
  } catch {
    // Reported below.
  }
  if (protocol !== "http:" && protocol !== "https:") throw new OpenAIConfigError(`${name} must be an http:// or https:// URL`);
  return url;
}
