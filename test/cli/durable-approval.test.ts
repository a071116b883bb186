import { Http2SessionManager } from "@connectrpc/connect-node";
import { mkdir, mkdtemp, readFile, realpath, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus, StopReason, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { Code } from "@connectrpc/connect";
import { startCli, type CliProcess } from "../support/cli-process.js";
import { expectReason } from "../support/errors.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { clientsFor, eventually, makeTransport, type Clients } from "../support/harness.js";
import { reply, type ScriptedToolCall } from "../support/openai-chunks.js";

/**
 * Durable tool approvals (issue 7) with real `worker-runtime serve`
 * processes on a file store: a run waiting for approval is SIGKILLed,
 * the server restarts on the same data dir, and the run is still
 * AWAITING_APPROVAL with the same pending call. The decision taken after
 * the restart runs the tool (or tells the model it was rejected) and the
 * run continues from the stored transcript to COMPLETED. The provider is
 * the fake OpenAI server in this process; it outlives the kills.
 */

const KEY = "sk-durable-approval-test";
/** Each case starts two or three server processes; a loaded 2-core host needs the margin. */
const CASE_TIMEOUT_MS = 120_000;
const REJECTED = "The user rejected this tool call, so it did not run.";
const call = (id: string, args: object): ScriptedToolCall => ({ id, name: "write_file", arguments: JSON.stringify(args) });

let fake: FakeOpenAI;
let base: string;
let dataDir: string;
let root: string;
let profiles: string;
const processes: CliProcess[] = [];
const sessions: Http2SessionManager[] = [];

beforeAll(async () => {
  fake = await startFakeOpenAI();
});
afterAll(async () => {
  await fake.close();
});

afterEach(async () => {
  for (const session of sessions.splice(0)) session.abort();
  for (const cli of processes.splice(0)) {
    cli.kill();
    await cli.exited;
  }
  await rm(base, { recursive: true, force: true });
});

async function freshDirs(): Promise<void> {
  base = await realpath(await mkdtemp(join(tmpdir(), "wr-approval-")));
  dataDir = join(base, "data");
  root = join(base, "root");
  await mkdir(root);
  profiles = join(base, "profiles.json");
  const careful = { name: "careful", tools: ["write_file"], approvalRequiredTools: ["write_file"], maxTurns: 5 };
  await writeFile(profiles, JSON.stringify({ profiles: [careful] }));
}

/** Starts `serve` on the data dir against the fake provider; returns clients over gRPC. */
async function serve(): Promise<{ cli: CliProcess; clients: Clients }> {
  const cli = startCli(["serve", "--port", "0", "--data-dir", dataDir, "--workspace-root", `work=${root}`, "--profiles", profiles], {
    OPENAI_API_KEY: KEY,
    OPENAI_BASE_URL: fake.baseURL,
  });
  processes.push(cli);
  const { h2c } = await cli.listening;
  const session = new Http2SessionManager(`http://${h2c}`);
  sessions.push(session);
  return { cli, clients: clientsFor(makeTransport("grpc", `http://${h2c}`, session)) };
}

/** SIGKILLs a server and waits for it to be gone. */
async function kill(server: { cli: CliProcess }): Promise<void> {
  server.cli.child.kill("SIGKILL");
  expect((await server.cli.exited).signal).toBe("SIGKILL");
}

async function waitForRun(clients: Clients, worker: WorkerRef, runId: string, check: (run: Run) => boolean, what: string): Promise<Run> {
  let last: Run | undefined;
  await eventually(
    async () => {
      last = (await clients.interaction.getRun({ worker, runId })).run;
      return last !== undefined && check(last);
    },
    15_000,
    what,
  );
  return last as Run;
}

const awaiting = (toolCallId: string) => (run: Run) =>
  run.status === RunStatus.AWAITING_APPROVAL && run.pendingApproval?.toolCallId === toolCallId;
const ended = (run: Run) => [RunStatus.COMPLETED, RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.INTERRUPTED].includes(run.status);

/** Creates the careful worker and sends the input; returns once the run waits for approval of `toolCallId`. */
async function startWaitingRun(clients: Clients, toolCallId: string): Promise<{ worker: WorkerRef; run: Run }> {
  const { runtime } = await clients.management.getRuntime({});
  const { worker } = await clients.catalog.createWorker({
    runtimeId: runtime?.runtimeId ?? "",
    capabilities: ["fs.write"],
    workspace: { root: "work", path: "ws" },
    profile: { source: { case: "builtin", value: "careful" } },
  });
  const ref = worker?.ref;
  if (!ref) throw new Error("no worker");
  const { run } = await clients.interaction.sendInput({ worker: ref, input: { text: "write the files" } });
  return { worker: ref, run: await waitForRun(clients, ref, run?.runId ?? "", awaiting(toolCallId), "awaiting approval") };
}

/** The messages of the provider's latest request. */
const lastMessages = () => fake.requests.at(-1)?.body.messages ?? [];

describe("a tool approval across a SIGKILL of the server", () => {
  it(
    "keeps the run waiting with its call; approving after the restart runs the tool and completes the run",
    async () => {
      await freshDirs();
      const requestsBefore = fake.requests.length;
      fake.enqueue(reply({ text: "I will write it.", toolCalls: [call("w1", { path: "a.txt", content: "approved A" })] }));
      const first = await serve();
      const { worker, run: waiting } = await startWaitingRun(first.clients, "w1");
      await kill(first);

      const second = await serve();
      const restored = (await second.clients.interaction.getRun({ worker, runId: waiting.runId })).run;
      expect(restored?.status).toBe(RunStatus.AWAITING_APPROVAL);
      expect(restored?.pendingApproval).toEqual(waiting.pendingApproval);
      expect(restored?.pendingApproval).toMatchObject({
        toolCallId: "w1",
        toolName: "write_file",
        argumentsJson: '{"path":"a.txt","content":"approved A"}',
      });
      const { worker: busy } = await second.clients.catalog.getWorker({ worker });
      expect(busy?.status).toBe(WorkerStatus.RUNNING);
      expect(busy?.activeRunId).toBe(waiting.runId);
      await expectReason(
        () => second.clients.interaction.sendInput({ worker, input: { text: "meanwhile" } }),
        Code.FailedPrecondition,
        ErrorReason.WORKER_BUSY,
      );
      await expect(stat(join(root, "ws", "a.txt"))).rejects.toThrow();
      expect(fake.requests.length).toBe(requestsBefore + 1);

      fake.enqueue(reply({ text: "Done: a.txt is written." }));
      const { run: answered } = await second.clients.interaction.resolveApproval({
        worker,
        runId: waiting.runId,
        toolCallId: "w1",
        decision: ApprovalDecision.APPROVE,
      });
      expect(answered?.status).toBe(RunStatus.RUNNING);
      const done = await waitForRun(second.clients, worker, waiting.runId, ended, "run end");
      expect(done.status).toBe(RunStatus.COMPLETED);
      expect(done.stopReason).toBe(StopReason.END_TURN);
      expect(done.turns).toBe(2);
      expect(await readFile(join(root, "ws", "a.txt"), "utf8")).toBe("approved A");

      // The second turn was asked from the stored transcript, the tool's result last.
      expect(fake.requests.length).toBe(requestsBefore + 2);
      const messages = lastMessages();
      expect(messages.filter((m) => m.role === "user").map((m) => m.content)).toEqual(["write the files"]);
      expect(messages.at(-2)).toMatchObject({ role: "assistant", tool_calls: [{ id: "w1", function: { name: "write_file" } }] });
      expect(messages.at(-1)).toMatchObject({ role: "tool", tool_call_id: "w1" });
      expect(messages.at(-1)?.content).not.toContain("did not");
      const transcript = await second.clients.observation.readTranscript({ worker });
      expect(transcript.entries.map((e) => e.content.case)).toEqual([
        "userMessage",
        "assistantMessage",
        "toolCall",
        "toolResult",
        "assistantMessage",
      ]);
      const { worker: idle } = await second.clients.catalog.getWorker({ worker });
      expect(idle?.status).toBe(WorkerStatus.IDLE);
    },
    CASE_TIMEOUT_MS,
  );

  it(
    "rejecting after the restart tells the model, with the reason, and the tool never runs",
    async () => {
      await freshDirs();
      fake.enqueue(reply({ toolCalls: [call("w1", { path: "no.txt", content: "x" })] }));
      const first = await serve();
      const { worker, run: waiting } = await startWaitingRun(first.clients, "w1");
      await kill(first);

      const second = await serve();
      expect((await second.clients.interaction.getRun({ worker, runId: waiting.runId })).run?.pendingApproval?.toolCallId).toBe("w1");
      fake.enqueue(reply({ text: "Understood, I left it alone." }));
      await second.clients.interaction.resolveApproval({
        worker,
        runId: waiting.runId,
        toolCallId: "w1",
        decision: ApprovalDecision.REJECT,
        reason: "not today",
      });
      expect((await waitForRun(second.clients, worker, waiting.runId, ended, "run end")).status).toBe(RunStatus.COMPLETED);
      await expect(stat(join(root, "ws", "no.txt"))).rejects.toThrow();
      expect(lastMessages().at(-1)).toEqual({ role: "tool", tool_call_id: "w1", content: `${REJECTED} Reason: not today` });
    },
    CASE_TIMEOUT_MS,
  );

  it(
    "decides two calls of one turn one by one across two kills: reject the first, approve the second",
    async () => {
      await freshDirs();
      fake.enqueue(
        reply({
          toolCalls: [call("w1", { path: "first.txt", content: "1" }), call("w2", { path: "second.txt", content: "2" })],
        }),
      );
      const first = await serve();
      const { worker, run: waiting } = await startWaitingRun(first.clients, "w1");
      await kill(first);

      const second = await serve();
      await second.clients.interaction.resolveApproval({
        worker,
        runId: waiting.runId,
        toolCallId: "w1",
        decision: ApprovalDecision.REJECT,
      });
      // The rejection did not abort the turn: the run now waits for the second call.
      await waitForRun(second.clients, worker, waiting.runId, awaiting("w2"), "awaiting the second approval");
      await kill(second);

      const third = await serve();
      const restored = (await third.clients.interaction.getRun({ worker, runId: waiting.runId })).run;
      expect(restored?.status).toBe(RunStatus.AWAITING_APPROVAL);
      expect(restored?.pendingApproval).toMatchObject({ toolCallId: "w2", argumentsJson: '{"path":"second.txt","content":"2"}' });
      fake.enqueue(reply({ text: "Wrote the second one only." }));
      await third.clients.interaction.resolveApproval({
        worker,
        runId: waiting.runId,
        toolCallId: "w2",
        decision: ApprovalDecision.APPROVE,
      });
      expect((await waitForRun(third.clients, worker, waiting.runId, ended, "run end")).status).toBe(RunStatus.COMPLETED);

      await expect(stat(join(root, "ws", "first.txt"))).rejects.toThrow();
      expect(await readFile(join(root, "ws", "second.txt"), "utf8")).toBe("2");
      const tools = lastMessages().filter((m) => m.role === "tool");
      expect(tools.map((m) => m.tool_call_id)).toEqual(["w1", "w2"]);
      expect(tools[0]?.content).toBe(`${REJECTED} No reason was given.`);
      expect(tools[1]?.content).not.toContain("did not");
      const transcript = await third.clients.observation.readTranscript({ worker });
      const results = transcript.entries.flatMap((e) => (e.content.case === "toolResult" ? [e.content.value] : []));
      expect(results.map((r) => [r.toolCallId, r.isError])).toEqual([
        ["w1", true],
        ["w2", false],
      ]);
    },
    CASE_TIMEOUT_MS,
  );
});
