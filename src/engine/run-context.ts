import type { Context } from "@opentelemetry/api";
import type { ShellSandboxMode } from "./tools/shell-sandbox.js";
import type OpenAI from "openai";
import type { Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import type { Logger, RunRequest, RunSink, RuntimeMetrics } from "../runtime/index.js";
import type { EngineLookups } from "./tools/host-lookups.js";
import type { BlockIds } from "./block-ids.js";
import type { ProviderHealth } from "./provider-health.js";
import type { RetryBudget, RetryPolicy } from "./retry.js";
import type { ToolDefinition } from "./tools/tool.js";
import type { ToolLimits } from "./tools/tool-limits.js";
import type { Workspace } from "./tools/workspace.js";

/** Backend settings with every default filled in (per run: the profile may lower some). */
export interface EngineSettings {
  requestTimeoutMs: number;
  streamIdleTimeoutMs: number;
  retry: RetryPolicy;
  maxStreamResumes: number;
  historyLimit: number;
  historyMaxBytes: number;
  maxAnswerBytes: number;
  maxToolArgumentsBytes: number;
  maxToolCallsPerTurn: number;
  toolLimits: ToolLimits;
  /** How shell.exec commands are isolated. */
  shellSandbox: ShellSandboxMode;
  /** Host paths sandboxed commands must not see (ShellSandboxOptions.hiddenPaths). */
  shellHiddenPaths: readonly string[];
  /** How the backend asks the host's file system: the runtime's lookups and timeout once it is ready (host-lookups.ts). */
  hostLookups: EngineLookups;
  random: () => number;
  /** Strings redacted from every error message (the API key). */
  secrets: readonly string[];
  /** The provider's scheme://host:port, named by errors and logs when it cannot be reached (never its path or query). */
  providerAddress: string;
  /** Send `max_completion_tokens` (OpenAI) rather than `max_tokens` (most compatible servers). */
  useMaxCompletionTokens: boolean;
}

/** Everything one run's loop, turns and tools share. */
export interface RunContext {
  readonly client: OpenAI;
  readonly settings: EngineSettings;
  readonly request: RunRequest;
  readonly sink: RunSink;
  readonly signal: AbortSignal;
  /** The run's profile with defaults filled in. */
  readonly profile: Profile;
  /** Tools offered in this run (profile ∩ granted capabilities). */
  readonly tools: readonly ToolDefinition[];
  readonly workspace: Workspace | undefined;
  readonly blocks: BlockIds;
  /** Ids of the run's tool calls so far: a provider's repeated id is replaced (ChunkAccumulator.toolCalls). */
  readonly toolCallIds: Set<string>;
  /** What is left of the run's retry budget, shared by all its model requests. */
  readonly retryBudget: RetryBudget;
  readonly health: ProviderHealth;
  readonly logger: Logger;
  /** Where each provider call's duration, time to first chunk and tokens go. */
  readonly metrics: RuntimeMetrics;
  /**
   * The trace context the run's spans are children of: the run's
   * `invoke_agent` span, and inside a model turn that turn's `chat` span
   * (genai-spans.ts), which its provider request propagates.
   */
  readonly trace: Context;
}
