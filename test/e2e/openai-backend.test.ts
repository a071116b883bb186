import { mkdir, readdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { AllocationMode } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { RunStatus, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { ConnectivityState } from "../../gen/worker_runtime/v1/worker_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { create } from "@bufbuild/protobuf";
import { ProfileSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { companionProfile, createOpenAIBackend } from "../../src/engine/index.js";
import { expectReason } from "../support/errors.js";
import { eventually, PROTOCOLS, startHarness } from "../support/harness.js";
import { errorReply, reply, replyChunks, type ScriptedToolCall } from "../support/openai-chunks.js";
import { E2E_KEY, ended, startOpenAIServer, type OpenAIServer } from "./openai-harness.js";

const call = (id: string, name: string, args: object): ScriptedToolCall => ({ id, name, arguments: JSON.stringify(args) });

describe.each(PROTOCOLS)("OpenAI backend through the server (%s)", (protocol) => {
  let s: OpenAIServer;
  beforeEach(async () => {
    const careful = create(ProfileSchema, { ...companionProfile("gpt-4o-mini"), name: "careful", approvalRequiredTools: ["write_file"] });
    // Commands run unsandboxed here (host pids in the tests); the sandbox is tested in test/bundles/shell-sandbox.test.ts.
    s = await startOpenAIServer(protocol, {
      toolLimits: { maxReadBytes: 64 },
      profiles: [careful],
      shellSandbox: "none",
      allowUnsandboxedShell: true,
    });
  });
  afterEach(async () => {
    await s.close();
  });

  it("runs a multi-turn tool loop: transcript, events, usage and the file change", async () => {
    const worker = await s.newWorker({ capabilities: ["fs.read", "fs.write"], path: "proj" });
    s.fake.enqueue(reply({ toolCalls: [call("c_read", "read_file", { path: "in.txt" })], usage: { prompt: 50, completion: 5 } }));
    // The backend creates a missing workspace directory; the test seeds it first.
    await mkdir(join(s.root, "proj"), { recursive: true });
    await writeFile(join(s.root, "proj", "in.txt"), "seed");
    s.fake.enqueue(
      reply({ toolCalls: [call("c_write", "write_file", { path: "out.txt", content: "SEED" })], usage: { prompt: 60, completion: 6 } }),
      reply({ reasoning: "done now", text: "Copied and upper-cased.", usage: { prompt: 70, completion: 7, cached: 30, reasoning: 2 } }),
    );
    const { run, events } = await s.runToEnd(worker, "copy in.txt upper-cased to out.txt");

    expect(run.status).toBe(RunStatus.COMPLETED);
    expect(run.stopReason).toBe(StopReason.END_TURN);
    expect(await readFile(join(s.root, "proj", "out.txt"), "utf8")).toBe("SEED");
    expect(run.usage).toMatchObject({
      inputTokens: 180n,
      outputTokens: 18n,
      cachedInputTokens: 30n,
      reasoningTokens: 2n,
      modelRequests: 3n,
    });
    expect(run.turns).toBe(3);

    const kinds = new Set(events.map((e) => e.kind.case));
    for (const kind of ["textDelta", "reasoningDelta", "toolCallDelta", "transcriptAppended", "runChanged"]) expect(kinds).toContain(kind);

    const transcript = await s.clients.observation.readTranscript({ worker: worker.ref });
    expect(transcript.entries.map((e) => e.content.case)).toEqual([
      "userMessage",
      "toolCall",
      "toolResult",
      "toolCall",
      "toolResult",
      "reasoning",
      "assistantMessage",
    ]);
    expect(s.fake.requests[1]?.body.messages.at(-1)).toEqual({ role: "tool", tool_call_id: "c_read", content: "seed" });
    expect(s.fake.requests[2]?.body.messages.at(-1)).toEqual({
      role: "tool",
      tool_call_id: "c_write",
      content: "wrote 4 bytes to out.txt",
    });
    const { worker: after } = await s.clients.catalog.getWorker({ worker: worker.ref });
    expect(after?.usage?.inputTokens).toBe(180n);
    expect(after?.connectivity?.state).toBe(ConnectivityState.CONNECTED);
  });

  it("retries two 429s with Retry-After into one completed run", async () => {
    const worker = await s.newWorker();
    s.fake.enqueue(errorReply(429, "slow", { "retry-after": "0" }), errorReply(429, "slow", { "retry-after": "0" }), reply({ text: "ok" }));
    const { run } = await s.runToEnd(worker, "hi");
    expect(run.status).toBe(RunStatus.COMPLETED);
    expect(s.fake.requests).toHaveLength(3);
  });

  it("fails a 401 with PROVIDER_AUTH_FAILED and no retry, and 5xx until the budget with PROVIDER_UNAVAILABLE", async () => {
    const worker = await s.newWorker();
    s.fake.enqueue(errorReply(401, `Incorrect API key provided: ${E2E_KEY}`));
    const { run } = await s.runToEnd(worker, "hi");
    expect(run.status).toBe(RunStatus.FAILED);
    expect(run.error?.reason).toBe(ErrorReason.PROVIDER_AUTH_FAILED);
    expect(run.error?.message).not.toContain(E2E_KEY);
    expect(s.fake.requests).toHaveLength(1);

    s.fake.setFallback(errorReply(503, "down"));
    const second = await s.runToEnd(worker, "again");
    expect(second.run.status).toBe(RunStatus.FAILED);
    expect(second.run.error?.reason).toBe(ErrorReason.PROVIDER_UNAVAILABLE);
    expect(s.fake.requests.length).toBeGreaterThan(2);
  });

  it("completes an answer whose stream was cut, with no duplicated text", async () => {
    const worker = await s.newWorker();
    const full = "Rivers run to the sea and the sea is never full.";
    s.fake.enqueue(
      { kind: "stream", chunks: replyChunks({ text: full, pieceSize: 6 }), end: "cut", cutAfter: 4 },
      reply({ text: full.slice(18), pieceSize: 6 }),
    );
    const { run } = await s.runToEnd(worker, "quote");
    expect(run.status).toBe(RunStatus.COMPLETED);
    const transcript = await s.clients.observation.readTranscript({ worker: worker.ref });
    const text = transcript.entries.map((e) => (e.content.case === "assistantMessage" ? e.content.value.text : "")).join("");
    expect(text).toBe(full);
  });

  // How fast the connection closes is a bench figure (`npm run bench -- cancel`), not a test assertion.
  it("cancels mid-stream: the provider sees the connection closed, CANCELLED, partial text kept", async () => {
    const worker = await s.newWorker();
    // "hang": the response never ends by itself, so only the cancel can close the connection.
    s.fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "tick ".repeat(300), pieceSize: 5 }), delayMs: 15, end: "hang" });
    const { run } = await s.clients.interaction.sendInput({ worker: worker.ref, input: { text: "count" } });
    const runId = run?.runId ?? "";
    await s.fake.waitForRequests(1);
    await eventually(
      async () => {
        const snapshot = await firstSnapshot(s, worker.ref);
        return (snapshot?.inFlight ?? []).some((block) => block.text.length >= 20);
      },
      5_000,
      "partial text in flight",
    );
    expect(s.fake.requests[0]?.clientClosedAt).toBeUndefined();
    await s.clients.interaction.cancelRun({ worker: worker.ref, runId });
    await s.fake.waitForClientClose(0);
    const final = await s.waitForRun(worker, runId, ended, "run end");
    expect(final.status).toBe(RunStatus.CANCELLED);
    const transcript = await s.clients.observation.readTranscript({ worker: worker.ref });
    const partial = transcript.entries.find((e) => e.content.case === "assistantMessage");
    expect(partial?.content.case === "assistantMessage" && partial.content.value.text).toMatch(/^(tick )+/);
  });

  it("cancel during a long shell command kills its process group", async () => {
    const worker = await s.newWorker({ capabilities: ["shell.exec"], path: "sh" });
    s.fake.enqueue(reply({ toolCalls: [call("c1", "run_command", { command: "sleep 30 & echo $! > child.pid; wait" })] }));
    const { run } = await s.clients.interaction.sendInput({ worker: worker.ref, input: { text: "sleep" } });
    const pidFile = join(s.root, "sh", "child.pid");
    await eventually(async () => (await readFile(pidFile, "utf8").catch(() => "")).trim() !== "", 5_000, "child pid");
    const childPid = Number((await readFile(pidFile, "utf8")).trim());
    await s.clients.interaction.cancelRun({ worker: worker.ref, runId: run?.runId ?? "" });
    const final = await s.waitForRun(worker, run?.runId ?? "", ended, "run end");
    expect(final.status).toBe(RunStatus.CANCELLED);
    await eventually(
      async () => {
        const state = await readFile(`/proc/${childPid}/stat`, "utf8").catch(() => "gone");
        return state === "gone" || state.slice(state.lastIndexOf(")") + 2).startsWith("Z");
      },
      5_000,
      "child process gone",
    );
  });

  it("refuses a workspace whose path leads out of its root through a symlink, creating and writing nothing there", async () => {
    // A symlink left in the root (by an earlier worker's command, say) pointing outside it.
    await symlink(s.outside, join(s.root, "planted"));
    // Directly, and below it: CreateWorker refuses both (test/e2e/host-leases.test.ts shows its error).
    for (const path of ["planted", "planted/deeper/w"]) {
      await expectReason(
        () => s.newWorker({ capabilities: ["fs.read", "fs.write"], path }),
        Code.FailedPrecondition,
        ErrorReason.WORKSPACE_DENIED,
      );
    }
    // Planted after the worker was created: its run refuses it too, and the backend makes a missing
    // workspace directory below it (here: deeper/w) not through the symlink either.
    for (const path of ["later", "later2/deeper/w"]) {
      const worker = await s.newWorker({ capabilities: ["fs.read", "fs.write"], path });
      await symlink(s.outside, join(s.root, path.split("/")[0] as string));
      s.fake.enqueue(reply({ toolCalls: [call("p1", "write_file", { path: "pwned.txt", content: "x" })] }), reply({ text: "done" }));
      const { run } = await s.runToEnd(worker, "write");
      expect(run.status).toBe(RunStatus.FAILED);
      expect(run.error?.reason).toBe(ErrorReason.WORKSPACE_DENIED);
      await s.clients.catalog.stopWorker({ worker: worker.ref });
    }
    // Nothing was created or written outside the root.
    expect(await readdir(s.outside)).toEqual([]);
  });

  it("refuses workspace escapes, bounds reads visibly, and leases the workspace to one writer", async () => {
    const writer = await s.newWorker({ capabilities: ["fs.read", "fs.write"], path: "shared" });
    await expectReason(
      () => s.newWorker({ capabilities: ["fs.write"], path: "shared/sub" }),
      Code.FailedPrecondition,
      ErrorReason.ALLOCATION_CONFLICT,
    ).then((detail) => expect(detail.metadata["holder_worker_id"]).toBe(writer.ref?.workerId));
    const { allocations } = await s.clients.management.listAllocations({});
    expect(allocations.map((a) => [a.holder?.workerId, a.path, a.mode])).toContainEqual([
      writer.ref?.workerId,
      "shared",
      AllocationMode.WRITE,
    ]);

    await writeFile(join(s.outside, "secret.txt"), "secret");
    await mkdir(join(s.root, "shared"), { recursive: true });
    await symlink(s.outside, join(s.root, "shared", "out"));
    await writeFile(join(s.root, "shared", "long.txt"), "y".repeat(500));
    s.fake.enqueue(
      reply({
        toolCalls: [
          call("e1", "read_file", { path: "../../outside/secret.txt" }),
          call("e2", "read_file", { path: join(s.outside, "secret.txt") }),
          call("e3", "write_file", { path: "out/planted.txt", content: "x" }),
          call("e4", "read_file", { path: "long.txt" }),
        ],
      }),
      reply({ text: "understood" }),
    );
    const { run } = await s.runToEnd(writer, "try");
    expect(run.status).toBe(RunStatus.COMPLETED);
    const results = (await s.clients.observation.readTranscript({ worker: writer.ref })).entries.flatMap((e) =>
      e.content.case === "toolResult" ? [e.content.value] : [],
    );
    expect(results.slice(0, 3).map((r) => [r.isError, r.output.startsWith("refused: ")])).toEqual([
      [true, true],
      [true, true],
      [true, true],
    ]);
    expect(results[3]).toMatchObject({ isError: false, truncated: true });
    expect(results[3]?.output).toContain("[file truncated: showing bytes 0-64 of 500");
    await expect(stat(join(s.outside, "planted.txt"))).rejects.toThrow();
    expect(s.fake.requests[1]?.body.messages.filter((m) => m.role === "tool").map((m) => m.content)).toEqual(results.map((r) => r.output));

    await s.clients.catalog.stopWorker({ worker: writer.ref });
    const second = await s.newWorker({ capabilities: ["fs.write"], path: "shared/sub" });
    expect(second.ref?.workerId).not.toBe(writer.ref?.workerId);
  });

  it("waits for approval visibly, continues after approve, and tells the model after reject", async () => {
    const worker = await s.newWorker({ capabilities: ["fs.write"], path: "ap", profile: "careful" });
    s.fake.enqueue(reply({ toolCalls: [call("w1", "write_file", { path: "a.txt", content: "A" })] }), reply({ text: "wrote it" }));
    const first = await s.clients.interaction.sendInput({ worker: worker.ref, input: { text: "write a" } });
    const runId = first.run?.runId ?? "";
    const waiting = await s.waitForRun(worker, runId, (r) => r.status === RunStatus.AWAITING_APPROVAL, "awaiting approval");
    expect(waiting.pendingApproval).toMatchObject({
      toolCallId: "w1",
      toolName: "write_file",
      argumentsJson: '{"path":"a.txt","content":"A"}',
    });
    const snapshot = await firstSnapshot(s, worker.ref);
    expect(snapshot?.activeRun?.pendingApproval?.toolCallId).toBe("w1");
    await expect(stat(join(s.root, "ap", "a.txt"))).rejects.toThrow();
    await s.clients.interaction.resolveApproval({ worker: worker.ref, runId, toolCallId: "w1", decision: ApprovalDecision.APPROVE });
    expect((await s.waitForRun(worker, runId, ended, "run end")).status).toBe(RunStatus.COMPLETED);
    expect(await readFile(join(s.root, "ap", "a.txt"), "utf8")).toBe("A");

    s.fake.enqueue(reply({ toolCalls: [call("w2", "write_file", { path: "b.txt", content: "B" })] }), reply({ text: "fine" }));
    const second = await s.clients.interaction.sendInput({ worker: worker.ref, input: { text: "write b" } });
    const secondId = second.run?.runId ?? "";
    await s.waitForRun(worker, secondId, (r) => r.status === RunStatus.AWAITING_APPROVAL, "awaiting approval");
    await s.clients.interaction.resolveApproval({
      worker: worker.ref,
      runId: secondId,
      toolCallId: "w2",
      decision: ApprovalDecision.REJECT,
      reason: "keep b.txt absent",
    });
    expect((await s.waitForRun(worker, secondId, ended, "run end")).status).toBe(RunStatus.COMPLETED);
    await expect(stat(join(s.root, "ap", "b.txt"))).rejects.toThrow();
    expect(s.fake.requests.at(-1)?.body.messages.at(-1)).toEqual({
      role: "tool",
      tool_call_id: "w2",
      content: "The user rejected this tool call, so it did not run. Reason: keep b.txt absent",
    });

    // Cancel works while waiting.
    s.fake.enqueue(reply({ toolCalls: [call("w3", "write_file", { path: "c.txt", content: "C" })] }));
    const third = await s.clients.interaction.sendInput({ worker: worker.ref, input: { text: "write c" } });
    const thirdId = third.run?.runId ?? "";
    await s.waitForRun(worker, thirdId, (r) => r.status === RunStatus.AWAITING_APPROVAL, "awaiting approval");
    await s.clients.interaction.cancelRun({ worker: worker.ref, runId: thirdId });
    expect((await s.waitForRun(worker, thirdId, ended, "run end")).status).toBe(RunStatus.CANCELLED);
  });
});

describe("OpenAI backend without a provider", () => {
  it("shows workers NOT_CONNECTED with the reason and refuses their input", async () => {
    const harness = await startHarness({ executionBackend: createOpenAIBackend({}) });
    try {
      const clients = harness.connect("grpc");
      const { worker } = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
      expect(worker?.connectivity?.state).toBe(ConnectivityState.NOT_CONNECTED);
      expect(worker?.connectivity?.reason).toContain("set OPENAI_API_KEY");
      const detail = await expectReason(
        () => clients.interaction.sendInput({ worker: worker?.ref, input: { text: "hello?" } }),
        Code.FailedPrecondition,
        ErrorReason.WORKER_NOT_CONNECTED,
      );
      expect(detail.metadata["reason"]).toContain("OPENAI_API_KEY");
      const transcript = await clients.observation.readTranscript({ worker: worker?.ref });
      expect(transcript.entries.filter((e) => e.content.case === "assistantMessage")).toEqual([]);
    } finally {
      await harness.close();
    }
  });
});

/** The snapshot a fresh WatchWorker sends first. */
async function firstSnapshot(s: OpenAIServer, ref: Parameters<OpenAIServer["clients"]["observation"]["watchWorker"]>[0]["worker"]) {
  const controller = new AbortController();
  try {
    for await (const message of s.clients.observation.watchWorker({ worker: ref }, { signal: controller.signal })) {
      if (message.snapshot) return message.snapshot;
    }
  } finally {
    controller.abort();
  }
  return undefined;
}
