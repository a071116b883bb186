import { mkdtemp, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { ProfileSchema, type Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import type { ExecutionBackend, RunOutcome } from "../../src/runtime/execution-backend.js";
import { createOpenAIBackend, type OpenAIBackendOptions } from "../../src/engine/index.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { RecordingSink, runRequest, type ApprovalHandler } from "../support/recording-sink.js";

/** The key the tests configure; no error message may ever contain it. */
export const TEST_KEY = "sk-test-9f8e7d6c5b4a-secret";

/** A fake provider, a temp workspace and a backend pointed at both. */
export interface Harness {
  fake: FakeOpenAI;
  /** Real path of a fresh workspace directory. */
  workspace: string;
  /** A scratch directory next to (outside) the workspace. */
  outside: string;
  backend: ExecutionBackend;
  /** The builtin companion profile, as the backend offers it. */
  companion: Profile;
  /** Runs one input and returns the outcome and the sink that recorded it. */
  run(init: RunInit): Promise<{ outcome: RunOutcome; sink: RecordingSink }>;
  close(): Promise<void>;
}

export interface RunInit {
  input: string;
  capabilities?: string[];
  profile?: Profile;
  signal?: AbortSignal;
  onApproval?: ApprovalHandler;
  sink?: RecordingSink;
  runId?: string;
}

let runCounter = 0;

export async function startHarness(options: Partial<OpenAIBackendOptions> = {}): Promise<Harness> {
  const fake = await startFakeOpenAI();
  const base = await realpath(await mkdtemp(join(tmpdir(), "engine-test-")));
  const workspace = join(base, "workspace");
  const outside = join(base, "outside");
  const { mkdir } = await import("node:fs/promises");
  await mkdir(workspace);
  await mkdir(outside);
  const backend = createOpenAIBackend({
    apiKey: TEST_KEY,
    baseURL: fake.baseURL,
    retry: { baseDelayMs: 5, maxDelayMs: 20, budgetMs: 2_000 },
    // These tests check the unsandboxed command path (host pids, the host's view); the sandbox has its own tests.
    shellSandbox: "none",
    allowUnsandboxedShell: true,
    ...options,
  });
  const companion = backend.profiles()[0] as Profile;
  return {
    fake,
    workspace,
    outside,
    backend,
    companion,
    async run(init) {
      const runId = init.runId ?? `run-${++runCounter}`;
      const sink = init.sink ?? new RecordingSink(runId, init.onApproval);
      sink.runId = runId;
      sink.commitInput(init.input);
      const request = runRequest(sink, {
        input: init.input,
        runId,
        profile: init.profile ?? companion,
        workspaceDir: workspace,
        capabilities: init.capabilities ?? [],
      });
      const outcome = await backend.execute(request, sink, init.signal ?? new AbortController().signal);
      return { outcome, sink };
    },
    async close() {
      await fake.close();
      await rm(base, { recursive: true, force: true });
    },
  };
}

/** A profile derived from the companion with some fields changed. */
export function profileWith(base: Profile, init: Partial<Omit<Profile, "$typeName" | "$unknown">>): Profile {
  return create(ProfileSchema, { ...base, ...init });
}
