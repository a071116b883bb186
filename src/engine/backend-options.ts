import type { ShellSandboxOptions } from "./tools/shell-sandbox.js";
import type { Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import type { RetryPolicy } from "./retry.js";
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
  /** Bounds on tool output, file reads and commands. */
  toolLimits?: Partial<ToolLimits>;
  /** Source of randomness for backoff jitter (tests pin it). */
  random?: () => number;
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
  streamIdleTimeoutMs: { min: 1_000, max: 3_600_000 },
  maxAnswerBytes: { min: 1_024, max: 3 * 1024 * 1024 },
  retryBudgetMs: { min: 0, max: 3_600_000 },
} as const;

/**
 * Reads provider configuration from the environment: `OPENAI_API_KEY`,
 * `OPENAI_BASE_URL`, `OPENAI_MODEL`, `OPENAI_KEYLESS=1` (local servers),
 * `OPENAI_REQUEST_TIMEOUT_MS`, `OPENAI_RETRY_BUDGET_MS`,
 * `OPENAI_STREAM_IDLE_TIMEOUT_MS` and `OPENAI_MAX_ANSWER_BYTES`. Values that
 * are not positive whole numbers are ignored here; the CLI checks the
 * bounds ({@link SETTING_BOUNDS}) of what it ends up with.
 */
export function openAIBackendOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): OpenAIBackendOptions {
  const options: OpenAIBackendOptions = {};
  if (env.OPENAI_API_KEY) options.apiKey = env.OPENAI_API_KEY;
  if (env.OPENAI_BASE_URL) options.baseURL = env.OPENAI_BASE_URL;
  if (env.OPENAI_MODEL) options.defaultModel = env.OPENAI_MODEL;
  if (env.OPENAI_KEYLESS === "1" || env.OPENAI_KEYLESS === "true") options.keyless = true;
  const timeout = positiveInt(env.OPENAI_REQUEST_TIMEOUT_MS);
  if (timeout !== undefined) options.requestTimeoutMs = timeout;
  const budget = positiveInt(env.OPENAI_RETRY_BUDGET_MS);
  if (budget !== undefined) options.retry = { budgetMs: budget };
  const idle = positiveInt(env.OPENAI_STREAM_IDLE_TIMEOUT_MS);
  if (idle !== undefined) options.streamIdleTimeoutMs = idle;
  const answer = positiveInt(env.OPENAI_MAX_ANSWER_BYTES);
  if (answer !== undefined) options.maxAnswerBytes = answer;
  return options;
}

function positiveInt(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  const parsed = Number(value);
  return parsed > 0 ? parsed : undefined;
}
