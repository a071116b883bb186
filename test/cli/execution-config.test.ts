import { mkdtemp, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { backendFromFlags, ExecutionConfigError, workspaceRootsFromFlags } from "../../src/cli/execution-config.js";
import { hostedRuntime, UsageError } from "../../src/cli/serve.js";
import { openAIBackendOptionsFromEnv } from "../../src/engine/index.js";
import { silentLogger } from "../../src/runtime/index.js";
import { startCli } from "../support/cli-process.js";

describe("serve execution flags", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "cli-exec-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("parses repeated --workspace-root with and without names", async () => {
    await mkdir(join(dir, "code"));
    await mkdir(join(dir, "notes"));
    expect(workspaceRootsFromFlags([join(dir, "code"), `docs=${join(dir, "notes")}`])).toEqual({
      code: join(dir, "code"),
      docs: join(dir, "notes"),
    });
    expect(() => workspaceRootsFromFlags([join(dir, "missing")])).toThrow(ExecutionConfigError);
    expect(() => workspaceRootsFromFlags([join(dir, "code"), `code=${join(dir, "notes")}`])).toThrow(/used twice/);
  });

  it("refuses --workspace-root directories that overlap on the host: nested, repeated, or through a symlink", async () => {
    await mkdir(join(dir, "code", "sub"), { recursive: true });
    await mkdir(join(dir, "notes"));
    await symlink(join(dir, "code", "sub"), join(dir, "link"));
    const overlapping = [
      [`a=${join(dir, "code")}`, `b=${join(dir, "code", "sub")}`],
      [`a=${join(dir, "code", "sub")}`, `b=${join(dir, "code")}`],
      [`a=${join(dir, "notes")}`, `b=${join(dir, "notes")}`],
      [`a=${join(dir, "link")}`, `b=${join(dir, "code")}`],
    ];
    // The runtime checks them (one check, symlinks resolved as its backend's tools follow them); the CLI makes it a usage error.
    for (const flags of overlapping) {
      const hosted = hostedRuntime({ "workspace-root": flags }, silentLogger);
      await expect(hosted).rejects.toThrow(UsageError);
      await expect(hosted).rejects.toThrow(/^--workspace-root: workspace roots "a" .* and "b" .* overlap on the host/);
    }
    // Side by side, and a name that merely starts like another's directory, are apart.
    await mkdir(join(dir, "code-2"));
    const apart = [`a=${join(dir, "code")}`, `b=${join(dir, "code-2")}`, `c=${join(dir, "notes")}`];
    expect(Object.keys(workspaceRootsFromFlags(apart))).toEqual(["a", "b", "c"]);
    await (await hostedRuntime({ "workspace-root": apart }, silentLogger)).close();
  });

  it("builds the backend from OPENAI_* with flags taking precedence, and loads --profiles", async () => {
    const file = join(dir, "profiles.json");
    await writeFile(file, JSON.stringify({ profiles: [{ name: "reviewer", tools: ["read_file"] }] }));
    const none = await backendFromFlags({}, {});
    expect(none.availability()).toMatchObject({ available: false });
    const keyed = await backendFromFlags({ "openai-model": "m-flag", profiles: file }, { OPENAI_API_KEY: "sk-env", OPENAI_MODEL: "m-env" });
    expect(keyed.availability()).toEqual({ available: true });
    expect(keyed.profiles().map((p) => [p.name, p.model])).toEqual([
      ["companion", "m-flag"],
      ["reviewer", "m-flag"],
    ]);
    const local = await backendFromFlags({ "openai-keyless": true, "openai-base-url": "http://127.0.0.1:11434/v1" }, {});
    expect(local.availability()).toEqual({ available: true });
    await expect(backendFromFlags({ profiles: join(dir, "nope.json") }, {})).rejects.toThrow(/cannot read --profiles: ENOENT/);
  });

  it.each([
    ["max_turns", { name: "loop", max_turns: 5000 }, /profile "loop": max_turns: is 5000; at most 1000/],
    ["name", { name: "has space" }, /profile "has space": name: must be 1-64 characters of \[A-Za-z0-9._-\]/],
    ["temperature", { name: "hot", temperature: -1 }, /profile "hot": temperature: must be a finite number, not negative/],
    [
      "approval_required_tools",
      { name: "gate", tools: ["read_file"], approval_required_tools: ["run_command"] },
      /profile "gate": approval_required_tools\[0\]: "run_command" is not one of the profile's tools/,
    ],
    ["secret_names", { name: "sec", secret_names: ["KEY"] }, /profile "sec": secret_names: only config bundle profiles/],
    [
      "provider_api_key_secret",
      { name: "key", provider_api_key_secret: "KEY" },
      /profile "key": provider_api_key_secret: only config bundle profiles/,
    ],
    ["size", { name: "big", system_prompt: "x".repeat(300 * 1024) }, /profile "big": is \d+ bytes encoded; at most 262144/],
  ])("refuses a --profiles entry a config bundle would refuse (%s), naming the profile and field", async (_field, profile, message) => {
    const file = join(dir, "profiles.json");
    await writeFile(file, JSON.stringify({ profiles: [{ name: "fine" }, profile] }));
    const attempt = backendFromFlags({ profiles: file }, { OPENAI_API_KEY: "sk-env" });
    await expect(attempt).rejects.toThrow(ExecutionConfigError);
    await expect(attempt).rejects.toThrow(message);
  });

  it("sets the stream idle timeout, answer cap and retry budget from flags over OPENAI_*, within their bounds", async () => {
    const env = {
      OPENAI_API_KEY: "sk-env",
      OPENAI_STREAM_IDLE_TIMEOUT_MS: "300000",
      OPENAI_MAX_ANSWER_BYTES: "2048",
      OPENAI_RETRY_BUDGET_MS: "5000",
    };
    expect((await backendFromFlags({}, env)).limits?.()).toEqual({
      streamIdleTimeoutMs: 300_000,
      maxAnswerBytes: 2048,
      retryBudgetMs: 5000,
    });
    const flagged = await backendFromFlags(
      { "openai-stream-idle-timeout-ms": "600000", "openai-max-answer-bytes": "4096", "openai-retry-budget-ms": "0" },
      env,
    );
    expect(flagged.limits?.()).toEqual({ streamIdleTimeoutMs: 600_000, maxAnswerBytes: 4096, retryBudgetMs: 0 });
    expect((await backendFromFlags({}, { OPENAI_API_KEY: "sk-env" })).limits?.()).toEqual({
      streamIdleTimeoutMs: 120_000,
      maxAnswerBytes: 1024 * 1024,
      retryBudgetMs: 60_000,
    });
    await expect(backendFromFlags({ "openai-stream-idle-timeout-ms": "10" }, {})).rejects.toThrow(
      new ExecutionConfigError("--openai-stream-idle-timeout-ms must be between 1000 and 3600000, not 10"),
    );
    await expect(backendFromFlags({ "openai-max-answer-bytes": "1e6" }, {})).rejects.toThrow(/must be a whole number/);
    await expect(backendFromFlags({}, { OPENAI_MAX_ANSWER_BYTES: "99999999" })).rejects.toThrow(ExecutionConfigError);
    await expect(backendFromFlags({ "openai-retry-budget-ms": "-1" }, {})).rejects.toThrow(ExecutionConfigError);
  });

  it("takes OPENAI_RETRY_BUDGET_MS=0 as the documented 'no retries', like the flag", async () => {
    expect((await backendFromFlags({}, { OPENAI_API_KEY: "sk-env", OPENAI_RETRY_BUDGET_MS: "0" })).limits?.()).toMatchObject({
      retryBudgetMs: 0,
    });
  });

  it.each([
    [{ OPENAI_STREAM_IDLE_TIMEOUT_MS: "abc" }, 'OPENAI_STREAM_IDLE_TIMEOUT_MS must be a whole number, not "abc"'],
    [{ OPENAI_MAX_ANSWER_BYTES: "1e6" }, 'OPENAI_MAX_ANSWER_BYTES must be a whole number, not "1e6"'],
    [{ OPENAI_RETRY_BUDGET_MS: "-1" }, 'OPENAI_RETRY_BUDGET_MS must be a whole number, not "-1"'],
    [{ OPENAI_KEYLESS: "yes" }, 'OPENAI_KEYLESS must be 1 or 0 (or true or false), not "yes"'],
    [{ OPENAI_BASE_URL: "127.0.0.1:11434/v1" }, "OPENAI_BASE_URL must be an http:// or https:// URL"],
  ])("refuses the bad value %j instead of ignoring it", async (env, message) => {
    await expect(backendFromFlags({}, env)).rejects.toThrow(new ExecutionConfigError(message));
  });

  it("refuses a bad --openai-base-url without echoing it (it may carry a key)", async () => {
    await expect(backendFromFlags({ "openai-base-url": "localhost:sk-secret" }, {})).rejects.toThrow(
      new ExecutionConfigError("--openai-base-url must be an http:// or https:// URL"),
    );
  });

  it("lets a flag override a bad variable", async () => {
    const backend = await backendFromFlags(
      { "openai-retry-budget-ms": "100" },
      { OPENAI_API_KEY: "sk-env", OPENAI_RETRY_BUDGET_MS: "soon" },
    );
    expect(backend.limits?.()).toMatchObject({ retryBudgetMs: 100 });
  });
});

describe("serve --help and backend --help", () => {
  /** Every variable the engine's configuration reads, recorded as it reads them. */
  function variablesTheEngineReads(): string[] {
    const read = new Set<string>();
    const env = new Proxy<NodeJS.ProcessEnv>(
      {},
      {
        get(_target, name) {
          if (typeof name === "string") read.add(name);
          return undefined;
        },
      },
    );
    openAIBackendOptionsFromEnv(env);
    return [...read].sort();
  }

  it.each([["serve"], ["backend"]])("%s --help names every OPENAI_* variable the engine reads", async (command) => {
    const variables = variablesTheEngineReads();
    expect(variables).toContain("OPENAI_RETRY_BUDGET_MS");
    const cli = startCli([command, "--help"]);
    expect(await cli.exited).toEqual({ code: 0, signal: null });
    expect(variables.filter((name) => !cli.stdout().includes(name))).toEqual([]);
  });
});
