import { context } from "@opentelemetry/api";
import { promises } from "node:fs";
import { resolve } from "node:path";
import { createProviderFetch } from "./provider-fetch.js";
import OpenAI from "openai";
import { create } from "@bufbuild/protobuf";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { ProfileSchema, type Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import type {
  BackendAvailability,
  BackendHost,
  ExecutionBackend,
  ExecutionLimits,
  RunOutcome,
  RunRequest,
  RunSink,
} from "../runtime/index.js";
import {
  childLogger,
  DEFAULT_LIMITS,
  noopMetrics,
  silentLogger,
  type Logger,
  type RuntimeMetrics,
  UnansweredLookups,
} from "../runtime/index.js";
import { DEFAULT_MODEL, httpUrl, type OpenAIBackendOptions } from "./backend-options.js";
import { createBlockIds } from "./block-ids.js";
import { companionProfile, completeProfile, DEFAULT_MAX_TURNS, ProfileConfigError } from "./profiles.js";
import { ProviderHealth } from "./provider-health.js";
import { keyOwnerOf, namingKeyOwner } from "./key-owner.js";
import { DEFAULT_RETRY_POLICY, RetryBudget } from "./retry.js";
import type { EngineSettings } from "./run-context.js";
import { executeRun } from "./run-loop.js";
import { DEFAULT_TOOL_LIMITS } from "./tools/tool-limits.js";
import { TOOL_CAPABILITIES, toolsForRun } from "./tools/tool-registry.js";
import { checkHiddenPathNames, pinHiddenPaths } from "./tools/hidden-paths.js";
import { programProblems } from "./tools/program-start-failure.js";
import { resolveShellSandbox } from "./tools/shell-sandbox.js";
import { ToolError } from "./tools/tool.js";
import { assertNotInsidePrivate, resolvePrivatePaths, Workspace } from "./tools/workspace.js";
import { describeMounts, openMounts } from "./tools/run-mounts.js";
import { workspaceRoots } from "./workspace-roots.js";
import { providerAddress } from "./provider-errors.js";
import { realHostPath } from "./tools/host-path.js";

const OPENAI_BASE_URL = "https://api.openai.com/v1";

/** Why workers are NOT_CONNECTED without a key; it names what to set. */
export const NO_PROVIDER_REASON = "no model provider configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for a compatible server)";

/** Why, when a base URL is set without a key: local servers (Ollama, llama.cpp) usually need none. */
export const NO_KEY_FOR_BASE_URL_REASON =
  "no model provider configured: a base URL is set but no key; set OPENAI_API_KEY, or OPENAI_KEYLESS=1 (--openai-keyless) for a server that needs none";

/**
 * Creates the execution backend that runs workers against OpenAI or any
 * OpenAI-compatible server through the `openai` package. Profiles given in
 * options are validated here, so a bad profile stops the server at startup
 * instead of failing runs later; so is a forced bubblewrap sandbox where
 * bwrap cannot run (ShellSandboxError).
 */
export function createOpenAIBackend(options: OpenAIBackendOptions): ExecutionBackend {
  // Checked as the environment's OPENAI_BASE_URL is: a bad one would otherwise fail only at the first run.
  if (options.baseURL !== undefined) httpUrl("baseURL", options.baseURL);
  const defaultModel = options.defaultModel ?? DEFAULT_MODEL;
  const profiles = [companionProfile(defaultModel), ...(options.profiles ?? []).map((p) => completeProfile(p, defaultModel))];
  const names = new Set<string>();
  for (const profile of profiles) {
    if (names.has(profile.name)) throw new ProfileConfigError(`profile "${profile.name}" is defined twice`);
    names.add(profile.name);
  }
  const availability = availabilityOf(options);
  const settings = settingsOf(options);
  let pinning: Promise<void> | undefined;
  // Located once, off the event loop, so deleting a link on the way later cannot uncover a path (hidden-paths.ts):
  // at ready(), through the runtime's lookups and timeout, or by the first run of a backend no runtime readied.
  const pinned = (): Promise<void> => {
    pinning ??= pinHiddenPaths(options.hiddenPaths ?? [], settings.hostLookups).then((paths) => {
      settings.shellHiddenPaths = paths;
    });
    return pinning;
  };
  const client = availability.available ? createClient(options, settings) : undefined;
  const health = new ProviderHealth();
  let logger: Logger = silentLogger;
  let metrics: RuntimeMetrics = noopMetrics;

  return {
    name: "openai",
    availability: () => availability,
    // A bundle profile's own key reaches the configured base URL (OpenAI's without one) even where the runtime has no key.
    availabilityFor: (profile, secrets) => (ownKeyOf(profile, secrets) !== undefined ? { available: true } : availability),
    profiles: () => profiles.map((profile) => create(ProfileSchema, profile)),
    // Without a sandbox, and without the operator's opt-out, shell.exec is not offered.
    toolCapabilities: () => TOOL_CAPABILITIES.filter((c) => c !== "shell.exec" || settings.shellSandbox !== "refused"),
    shellSandbox: () => (settings.shellSandbox === "refused" ? "" : settings.shellSandbox),
    // Where commands are refused anyway, no program is checked: shell.exec is not offered.
    programProblems: (programs) =>
      settings.shellSandbox === "refused" ? [] : programProblems(programs, settings.shellSandbox, settings.hostLookups),
    hostPath: (dir) => realHostPath(dir),
    attach(host: BackendHost) {
      health.attach(host.diagnostics);
      logger = host.logger;
      metrics = host.metrics ?? noopMetrics;
    },
    limits: (): ExecutionLimits => ({
      streamIdleTimeoutMs: settings.streamIdleTimeoutMs,
      maxAnswerBytes: settings.maxAnswerBytes,
      retryBudgetMs: settings.retry.budgetMs,
    }),
    // From now on the engine asks the host through the runtime's lookups, within its timeout (--host-path-timeout-ms).
    // A private path that cannot be kept covered, or does not answer in time, refuses start-up.
    ready: (host) => {
      if (host) settings.hostLookups = { lookups: host.lookups, timeoutMs: host.timeoutMs, fs: settings.hostLookups.fs };
      return pinned();
    },
    async execute(request: RunRequest, sink: RunSink, signal: AbortSignal): Promise<RunOutcome> {
      await pinned();
      const secrets = request.policy?.secrets ?? new Map<string, string>();
      // A bundle profile may bring its own provider key, by secret name (Profile.provider_api_key_secret).
      const profileKey = ownKeyOf(request.profile, secrets);
      const runClient = profileKey !== undefined ? createClient({ ...options, apiKey: profileKey, keyless: false }, settings) : client;
      if (!runClient || (profileKey === undefined && !availability.available)) {
        const reason = availability.available ? NO_PROVIDER_REASON : availability.reason;
        return { kind: "failed", reason: ErrorReason.WORKER_NOT_CONNECTED, message: reason };
      }
      if (signal.aborted) return { kind: "cancelled" };
      let workspace: Workspace | undefined;
      if (request.workspaceDir !== undefined) {
        try {
          // The Runtime validated the path at create time but does not make
          // the directory; a new worker's workspace starts out empty.
          const privatePaths = await resolvePrivatePaths(
            settings.shellHiddenPaths,
            workspaceRoots(request),
            request.workspaceRootDir,
            settings.hostLookups,
          );
          assertNotInsidePrivate(resolve(request.workspaceDir), privatePaths);
          if (request.workspaceRootDir !== undefined) {
            workspace = await Workspace.openInside(request.workspaceRootDir, request.workspaceDir, settings.hostLookups);
          } else {
            workspace = await Workspace.open(request.workspaceDir, settings.hostLookups);
          }
          assertNotInsidePrivate(workspace.root, privatePaths);
          workspace = workspace.withPrivatePaths(privatePaths);
          if (request.mounts?.length)
            workspace = await openMounts(
              workspace,
              request.mounts,
              settings.shellHiddenPaths,
              workspaceRoots(request),
              settings.hostLookups,
            );
        } catch (error) {
          const message = error instanceof ToolError ? error.message : "the worker's workspace directory cannot be opened";
          return { kind: "failed", reason: ErrorReason.WORKSPACE_DENIED, message };
        }
      }
      const profile = withDefaults(request.profile, defaultModel);
      const runSettings = { ...settingsForProfile(settings, profile), secrets: [...settings.secrets, ...secrets.values()] };
      const outcome = await executeRun({
        client: runClient,
        settings: runSettings,
        request,
        sink,
        signal,
        profile,
        tools: describeMounts(toolsForRun(profile.tools, request.capabilities), request.mounts ?? [], settings.shellSandbox),
        workspace,
        blocks: createBlockIds(request.run.runId),
        toolCallIds: new Set(),
        retryBudget: new RetryBudget(runSettings.retry.budgetMs),
        health,
        // Every line a run logs names its worker and run (and, from the Runtime, the call that started it).
        logger: request.logger ?? childLogger(logger, { worker_id: request.worker.ref?.workerId, run_id: request.run.runId }),
        metrics,
        trace: request.traceContext ?? context.active(),
      });
      const named = namingKeyOwner(
        outcome,
        keyOwnerOf(request, profile, profileKey !== undefined, options.keyless === true && !options.apiKey),
      );
      if (named.kind === "failed") health.failed(named.reason, named.message);
      return named;
    },
  };
}

/**
 * A run's settings: the profile may lower the stream idle timeout, the
 * answer cap and the retry budget, never raise them past the runtime's
 * (which are the bounds GetRuntime reports).
 */
function settingsForProfile(settings: EngineSettings, profile: Profile): EngineSettings {
  const lower = (own: number, bound: number): number => (own > 0 ? Math.min(own, bound) : bound);
  return {
    ...settings,
    streamIdleTimeoutMs: lower(profile.streamIdleTimeoutMs, settings.streamIdleTimeoutMs),
    maxAnswerBytes: lower(profile.maxAnswerBytes, settings.maxAnswerBytes),
    retry: { ...settings.retry, budgetMs: lower(profile.retryBudgetMs, settings.retry.budgetMs) },
  };
}

/** The provider key a profile brings itself (its provider_api_key_secret's value), if the host has a non-empty one. */
function ownKeyOf(profile: Profile, secrets: ReadonlyMap<string, string>): string | undefined {
  if (profile.providerApiKeySecret === "") return undefined;
  const key = secrets.get(profile.providerApiKeySecret);
  return key === undefined || key === "" ? undefined : key;
}

function availabilityOf(options: OpenAIBackendOptions): BackendAvailability {
  if (options.keyless) {
    return options.baseURL
      ? { available: true }
      : { available: false, reason: "keyless mode needs OPENAI_BASE_URL (the local server to use)" };
  }
  if (options.apiKey) return { available: true };
  return { available: false, reason: options.baseURL ? NO_KEY_FOR_BASE_URL_REASON : NO_PROVIDER_REASON };
}

function settingsOf(options: OpenAIBackendOptions): EngineSettings {
  return {
    requestTimeoutMs: options.requestTimeoutMs ?? 60_000,
    streamIdleTimeoutMs: options.streamIdleTimeoutMs ?? 120_000,
    retry: { ...DEFAULT_RETRY_POLICY, ...options.retry },
    maxStreamResumes: options.maxStreamResumes ?? 2,
    historyLimit: options.historyLimit ?? 200,
    historyMaxBytes: options.historyMaxBytes ?? 400_000,
    maxAnswerBytes: options.maxAnswerBytes ?? 1024 * 1024,
    maxToolArgumentsBytes: options.maxToolArgumentsBytes ?? 4 * 1024 * 1024,
    maxToolCallsPerTurn: options.maxToolCallsPerTurn ?? 128,
    toolLimits: { ...DEFAULT_TOOL_LIMITS, ...options.toolLimits },
    shellSandbox: resolveShellSandbox(options),
    // As named until located (createOpenAIBackend): runs wait for that.
    shellHiddenPaths: hiddenPathsNamed(options.hiddenPaths ?? []),
    // Replaced by the runtime's at ready().
    hostLookups: { lookups: new UnansweredLookups(), timeoutMs: DEFAULT_LIMITS.hostPathTimeoutMs, fs: options.hostFs ?? promises },
    random: options.random ?? Math.random,
    secrets: options.apiKey ? [options.apiKey] : [],
    providerAddress: providerAddress(options.baseURL ?? OPENAI_BASE_URL),
    useMaxCompletionTokens: options.baseURL === undefined,
  };
}

/**
 * The SDK client. Its own retries are off (ours honour a total budget), and
 * the base URL is always passed explicitly so the SDK never reads
 * `OPENAI_BASE_URL` behind the options' back. Keyless mode removes the
 * Authorization header instead of sending a fake key.
 */
function createClient(options: OpenAIBackendOptions, settings: EngineSettings): OpenAI {
  return new OpenAI({
    apiKey: options.apiKey ?? "keyless",
    baseURL: options.baseURL ?? OPENAI_BASE_URL,
    organization: null,
    project: null,
    maxRetries: 0,
    timeout: settings.requestTimeoutMs,
    fetch: createProviderFetch(),
    ...(options.keyless && !options.apiKey ? { defaultHeaders: { Authorization: null } } : {}),
  });
}

/** A run's profile as the loop needs it; tolerant of bundle profiles naming tools this backend lacks. */
function withDefaults(profile: Profile, defaultModel: string): Profile {
  return create(ProfileSchema, {
    ...profile,
    model: profile.model || defaultModel,
    maxTurns: profile.maxTurns || DEFAULT_MAX_TURNS,
  });
}

/** The private paths as named (absolute), refusing "/" at once (checkHiddenPathNames). */
function hiddenPathsNamed(paths: readonly string[]): string[] {
  checkHiddenPathNames(paths);
  return paths.map((path) => resolve(path));
}
