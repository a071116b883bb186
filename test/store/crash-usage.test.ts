import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { eventually } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";
import { startRestartableServe } from "../support/restartable-serve.js";

/**
 * Tokens the provider counted are spent whatever happens to the runtime
 * next. A run cut off by a crash used to come back INTERRUPTED with no
 * usage (the run was written only on state changes, and its usage only
 * counted in memory) and the worker's totals never took even what had been
 * written (the restart ended the run without adding it). Shown through a
 * real crash: `serve --data-dir` SIGKILLed while the run's second model
 * request is held by the fake provider, then started again on the same dir.
 */
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The first answer: a tool call, with what the provider counted for it. */
const TOOL_CALL_TURN = reply({
  toolCalls: [{ id: "c1", name: "read_file", arguments: '{"path":"notes.txt"}' }],
  usage: { prompt: 1000, completion: 100 },
});

function providerEnv(provider: FakeOpenAI): Record<string, string> {
  return { OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: provider.baseURL };
}

describe("usage of a run a crash interrupted", () => {
  it("keeps the tokens of the turns the provider finished, on the run and in the worker's totals", async () => {
    const provider = await startFakeOpenAI();
    cleanups.push(() => provider.close());
    provider.enqueue(TOOL_CALL_TURN, { kind: "stall" });
    const { listening, before, restart } = await startRestartableServe([], providerEnv(provider), cleanups);
    const runtimeId = listening.runtimeId;
    const { worker } = await before.catalog.createWorker({ runtimeId });
    const { run } = await before.interaction.sendInput({ worker: worker?.ref, input: { text: "go" } });
    const runId = run?.runId ?? "";
    await eventually(() => provider.requests.length >= 2, 10_000, "the second model request");
    // The run is written before its tools run; that write (an fsync) may still be landing as the next request goes out.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const running = (await before.interaction.getRun({ worker: worker?.ref, runId })).run;
    expect([running?.status, running?.usage?.inputTokens, running?.usage?.outputTokens]).toEqual([RunStatus.RUNNING, 1000n, 100n]);

    const after = (await restart()).clients;
    const ended = (await after.interaction.getRun({ worker: worker?.ref, runId })).run;
    expect([ended?.status, ended?.usage?.inputTokens, ended?.usage?.outputTokens]).toEqual([RunStatus.INTERRUPTED, 1000n, 100n]);
    const totals = (await after.catalog.getWorker({ worker: worker?.ref })).worker?.usage;
    expect([totals?.inputTokens, totals?.outputTokens]).toEqual([1000n, 100n]);
  }, 120_000);

  it("adds an approved run's recorded usage to the worker's totals", async () => {
    const provider = await startFakeOpenAI();
    cleanups.push(() => provider.close());
    provider.enqueue(TOOL_CALL_TURN, { kind: "stall" });
    const root = await mkdtemp(path.join(tmpdir(), "crash-usage-root-"));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    await mkdir(path.join(root, "p"));
    const profiles = path.join(root, "profiles.json");
    await writeFile(
      profiles,
      JSON.stringify({ profiles: [{ name: "careful", model: "m", tools: ["read_file"], approvalRequiredTools: ["read_file"] }] }),
    );
    const { listening, before, restart } = await startRestartableServe(
      ["--workspace-root", `work=${root}`, "--profiles", profiles],
      providerEnv(provider),
      cleanups,
    );
    const runtimeId = listening.runtimeId;
    const { worker } = await before.catalog.createWorker({
      runtimeId,
      capabilities: ["fs.read"],
      workspace: { root: "work", path: "p" },
      profile: { source: { case: "builtin", value: "careful" } },
    });
    const { run } = await before.interaction.sendInput({ worker: worker?.ref, input: { text: "go" } });
    const runId = run?.runId ?? "";
    await eventually(
      async () => (await before.interaction.getRun({ worker: worker?.ref, runId })).run?.status === RunStatus.AWAITING_APPROVAL,
      10_000,
      "the approval request",
    );
    await before.interaction.resolveApproval({ worker: worker?.ref, runId, toolCallId: "c1", decision: ApprovalDecision.APPROVE });
    await eventually(() => provider.requests.length >= 2, 10_000, "the second model request");

    const after = (await restart()).clients;
    const ended = (await after.interaction.getRun({ worker: worker?.ref, runId })).run;
    expect([ended?.status, ended?.usage?.inputTokens, ended?.usage?.outputTokens]).toEqual([RunStatus.INTERRUPTED, 1000n, 100n]);
    const totals = (await after.catalog.getWorker({ worker: worker?.ref })).worker?.usage;
    expect([totals?.inputTokens, totals?.outputTokens]).toEqual([1000n, 100n]);
  }, 120_000);
});
