import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { ProfileSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import {
  createOpenAIBackend,
  loadProfilesFile,
  OpenAIConfigError,
  openAIBackendOptionsFromEnv,
  ProfileConfigError,
} from "../../src/engine/index.js";
import { reply } from "../support/openai-chunks.js";
import { RecordingSink, runRequest } from "../support/recording-sink.js";
import { startHarness, type Harness } from "./harness.js";

describe("provider configuration", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it("is unavailable without a key, naming what to set, and never calls out", async () => {
    const backend = createOpenAIBackend({});
    expect(backend.availability()).toEqual({
      available: false,
      reason: "no model provider configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for a compatible server)",
    });
    const sink = new RecordingSink("r1");
    const outcome = await backend.execute(runRequest(sink, { input: "hi", runId: "r1" }), sink, new AbortController().signal);
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.WORKER_NOT_CONNECTED });
    expect(sink.events).toEqual([]);
  });

  it("with a base URL but no key, says to set the key or keyless mode (a local server usually needs no key)", () => {
    // Found walking the README: OPENAI_BASE_URL set for Ollama without --openai-keyless was told
    // to set OPENAI_BASE_URL, which it had, and never that the key can be done without.
    expect(createOpenAIBackend({ baseURL: "http://127.0.0.1:11434/v1" }).availability()).toEqual({
      available: false,
      reason:
        "no model provider configured: a base URL is set but no key; set OPENAI_API_KEY, or OPENAI_KEYLESS=1 (--openai-keyless) for a server that needs none",
    });
  });

  it("keyless mode needs a base URL, and then sends no Authorization header", async () => {
    expect(createOpenAIBackend({ keyless: true }).availability()).toMatchObject({ available: false });
    h = await startHarness({ apiKey: undefined, keyless: true });
    expect(h.backend.availability()).toEqual({ available: true });
    h.fake.enqueue(reply({ text: "local hello" }));
    const { outcome } = await h.run({ input: "hi" });
    expect(outcome.kind).toBe("completed");
    expect(h.fake.requests[0]?.headers.authorization).toBeUndefined();
  });

  it("reads OPENAI_* from an environment", () => {
    expect(
      openAIBackendOptionsFromEnv({
        OPENAI_API_KEY: "sk-x",
        OPENAI_BASE_URL: "http://127.0.0.1:11434/v1",
        OPENAI_MODEL: "llama3",
        OPENAI_KEYLESS: "1",
        OPENAI_REQUEST_TIMEOUT_MS: "5000",
        OPENAI_RETRY_BUDGET_MS: "0",
        OPENAI_STREAM_IDLE_TIMEOUT_MS: "",
      }),
    ).toEqual({
      apiKey: "sk-x",
      baseURL: "http://127.0.0.1:11434/v1",
      defaultModel: "llama3",
      keyless: true,
      requestTimeoutMs: 5000,
      retry: { budgetMs: 0 },
    });
    expect(openAIBackendOptionsFromEnv({ OPENAI_KEYLESS: "false", OPENAI_MAX_ANSWER_BYTES: "2048" })).toEqual({ maxAnswerBytes: 2048 });
  });

  it.each([
    [{ OPENAI_RETRY_BUDGET_MS: "abc" }, 'OPENAI_RETRY_BUDGET_MS must be a whole number, not "abc"'],
    [{ OPENAI_REQUEST_TIMEOUT_MS: "0" }, "OPENAI_REQUEST_TIMEOUT_MS must be between 1000 and 3600000, not 0"],
    [{ OPENAI_STREAM_IDLE_TIMEOUT_MS: "1e6" }, 'OPENAI_STREAM_IDLE_TIMEOUT_MS must be a whole number, not "1e6"'],
    [{ OPENAI_MAX_ANSWER_BYTES: "99999999" }, "OPENAI_MAX_ANSWER_BYTES must be between 1024 and 3145728, not 99999999"],
    [{ OPENAI_KEYLESS: "yes" }, 'OPENAI_KEYLESS must be 1 or 0 (or true or false), not "yes"'],
    [{ OPENAI_BASE_URL: "localhost:sk-secret" }, "OPENAI_BASE_URL must be an http:// or https:// URL"],
  ])("refuses the unusable value %j with a typed error rather than quietly using the default", (env, message) => {
    expect(() => openAIBackendOptionsFromEnv(env)).toThrow(new OpenAIConfigError(message));
  });

  it("refuses a baseURL that is no http(s) URL when given in code, as the environment's OPENAI_BASE_URL is", () => {
    for (const baseURL of ["notaurl", "localhost:8080", "ftp://example.test/v1"]) {
      expect(() => createOpenAIBackend({ apiKey: "sk-x", baseURL }), baseURL).toThrow(
        new OpenAIConfigError("baseURL must be an http:// or https:// URL"),
      );
    }
    expect(createOpenAIBackend({ apiKey: "sk-x", baseURL: "http://127.0.0.1:1/v1" }).profiles()).not.toHaveLength(0);
  });

  it("offers the builtin companion first, then configured profiles, and the tool capabilities", () => {
    const backend = createOpenAIBackend({
      apiKey: "sk-x",
      defaultModel: "m1",
      profiles: [create(ProfileSchema, { name: "reviewer", tools: ["read_file"], approvalRequiredTools: [] })],
    });
    expect(backend.profiles().map((p) => [p.name, p.model, p.maxTurns])).toEqual([
      ["companion", "m1", 20],
      ["reviewer", "m1", 20],
    ]);
    expect(backend.toolCapabilities()).toEqual(["fs.read", "fs.write", "shell.exec"]);
    expect(() => createOpenAIBackend({ profiles: [create(ProfileSchema, { name: "companion" })] })).toThrow(ProfileConfigError);
    expect(() => createOpenAIBackend({ profiles: [create(ProfileSchema, { name: "x", tools: ["rm_rf"] })] })).toThrow(
      /unknown tools: rm_rf/,
    );
  });

  describe("profiles file", () => {
    let dir: string;
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it("loads profiles in proto or camelCase JSON and rejects unknown fields", async () => {
      dir = await mkdtemp(join(tmpdir(), "profiles-"));
      const file = join(dir, "profiles.json");
      await writeFile(
        file,
        JSON.stringify({
          profiles: [
            {
              name: "coder",
              model: "gpt-4.1",
              system_prompt: "Write code.",
              temperature: 0.1,
              max_output_tokens: 2048,
              tools: ["read_file", "write_file", "run_command"],
              max_turns: 8,
              approval_required_tools: ["run_command"],
            },
            { name: "chat", systemPrompt: "Chat." },
          ],
        }),
      );
      const profiles = await loadProfilesFile(file, "default-model");
      expect(profiles.map((p) => [p.name, p.model, p.systemPrompt, p.temperature, p.maxOutputTokens, p.maxTurns])).toEqual([
        ["coder", "gpt-4.1", "Write code.", 0.1, 2048, 8],
        ["chat", "default-model", "Chat.", undefined, 0, 20],
      ]);
      expect(profiles[0]?.approvalRequiredTools).toEqual(["run_command"]);

      await writeFile(file, JSON.stringify([{ name: "bad", sytem_prompt: "typo" }]));
      await expect(loadProfilesFile(file, "m")).rejects.toThrow(/entry 0/);
    });
  });
});
