import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStatus } from "../../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus } from "../../../gen/worker_runtime/v1/worker_pb.js";
import { ApprovalDecision } from "../../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { reply } from "../../support/openai-chunks.js";
import { eventually } from "../../support/harness.js";
import { decisionRequestId } from "../../../src/cli/client/decision-request-id.js";
import { jsonLines, runClient, serveRuntime, startClient, type ServedRuntime } from "./client-support.js";

/**
 * Each client subcommand against a real `worker-runtime serve` process with
 * the fake provider: what it prints (text and `--output json`), its exit
 * code, and what it changed on the server, read back with the generated
 * clients.
 */

let rt: ServedRuntime;

beforeAll(async () => {
  rt = await serveRuntime({
    profiles: [{ name: "careful", tools: ["list_files"], approval_required_tools: ["list_files"] }],
  });
});

afterAll(async () => {
  await rt?.close();
});

const cli = (...args: string[]) => runClient(args, { server: rt.url });

async function createWorker(...extra: string[]): Promise<string> {
  const created = await cli("workers", "create", "--profile", "companion", ...extra);
  expect(created.stderr).toBe("");
  expect(created.code).toBe(0);
  // Piped, create prints just the id.
  expect(created.stdout).toMatch(/^w-\S+\n$/);
  return created.stdout.trim();
}

describe("runtime and runtimes", () => {
  it("runtime info prints the summary, and JSON that parses", async () => {
    const text = await cli("runtime", "info");
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("runtime: rt-client");
    expect(text.stdout).toContain("status: SERVING");
    expect(text.stdout).toContain("profiles: companion, careful");
    const json = await cli("runtime", "info", "--output", "json", "--protocol", "connect");
    expect(json.code).toBe(0);
    const [summary] = jsonLines(json.stdout);
    const wrong = await cli("runtime", "info", "--runtime", "rt-other");
    expect(wrong).toMatchObject({
      code: 5,
      stderr: 'worker-runtime: --runtime "rt-other" is not a runtime of this server (it has rt-client) (reason: NOT_FOUND)\n',
    });
    expect(summary).toMatchObject({ runtimeId: "rt-client", status: "RUNTIME_STATUS_SERVING", storeKind: "STORE_KIND_MEMORY" });
  });

  it("runtimes list shows the runtime as ready; diagnostics list parses", async () => {
    const list = await cli("runtimes", "list");
    expect(list.code).toBe(0);
    expect(list.stdout.trim().split("\t").slice(0, 3)).toEqual(["rt-client", "READY", rt.url]);
    const json = jsonLines((await cli("runtimes", "list", "--output", "json")).stdout);
    expect(json).toHaveLength(1);
    expect(json[0]).toMatchObject({ runtimeId: "rt-client", health: "RUNTIME_HEALTH_READY", summary: { runtimeId: "rt-client" } });
    const diagnostics = await cli("runtime", "diagnostics", "--output", "json");
    expect(diagnostics.code).toBe(0);
    const { diagnostics: onServer } = await rt.clients.management.listDiagnostics({});
    expect(jsonLines(diagnostics.stdout).map((d) => d.code)).toEqual(onServer.map((d) => d.code));
  });
});

describe("workers", () => {
  it("create, get, list with filters, stop and delete change the server as they say", async () => {
    const id = await createWorker(
      "--label",
      "team=blue",
      "--label",
      "tier=1",
      "--name",
      "Blue",
      "--capability",
      "fs.read",
      "--workspace",
      "ws",
    );
    const { worker } = await rt.clients.catalog.getWorker({ worker: { runtimeId: rt.runtimeId, workerId: id } });
    expect(worker?.labels).toEqual({ team: "blue", tier: "1" });
    expect(worker?.displayName).toBe("Blue");
    expect(worker?.capabilities).toEqual(["fs.read"]);
    expect(worker?.workspace?.root).toBe("ws");
    const other = await createWorker("--label", "team=red");

    const got = await cli("workers", "get", id);
    expect(got.code).toBe(0);
    expect(got.stdout).toContain(`worker: ${id}`);
    expect(got.stdout).toContain("labels: team=blue,tier=1");
    expect(got.stdout).toContain("connectivity: CONNECTED");

    const blue = await cli("workers", "list", "--label", "team=blue");
    expect(blue.code).toBe(0);
    const rows = blue.stdout
      .trim()
      .split("\n")
      .map((line) => line.split("\t"));
    expect(rows.map((row) => row[0])).toEqual([id]);
    expect(rows[0]?.slice(1, 4)).toEqual(["IDLE", "companion", "CONNECTED"]);

    const all = jsonLines((await cli("workers", "list", "--output", "json")).stdout);
    expect(all.map((w) => (w.ref as { workerId: string }).workerId)).toEqual(expect.arrayContaining([id, other]));

    const stopped = await cli("workers", "stop", other);
    expect(stopped).toMatchObject({ code: 0, stdout: `stopped ${other}\n` });
    expect((await rt.clients.catalog.getWorker({ worker: { runtimeId: rt.runtimeId, workerId: other } })).worker?.status).toBe(
      WorkerStatus.STOPPED,
    );
    const onlyStopped = await cli("workers", "list", "--status", "stopped", "--output", "json");
    expect(jsonLines(onlyStopped.stdout).map((w) => (w.ref as { workerId: string }).workerId)).toEqual([other]);

    // Deleting a worker that is not stopped is refused with its typed reason; --force deletes it.
    const refused = await cli("workers", "delete", id);
    expect(refused.code).toBe(8);
    expect(refused.stderr).toMatch(/\(reason: WORKER_NOT_STOPPED\)\n$/);
    expect(await cli("workers", "delete", id, "--force")).toMatchObject({ code: 0, stdout: `deleted ${id}\n` });
    expect(await cli("workers", "delete", other)).toMatchObject({ code: 0 });
    const { workers } = await rt.clients.catalog.listWorkers({ runtimeId: rt.runtimeId });
    expect(workers.map((w) => w.ref?.workerId)).not.toContain(id);
    expect(workers.map((w) => w.ref?.workerId)).not.toContain(other);
    // Twelve CLI processes in a row, each starting Node from source: a loaded CI machine took over 60 s.
  }, 180_000);

  it("create --mount gives the worker mounts, get shows them, and a malformed --mount exits 2", async () => {
    const id = await createWorker(
      "--capability",
      "fs.write",
      "--workspace",
      "ws/mounted-proj",
      "--mount",
      "ws:shared/docs:docs",
      "--mount",
      "ws:out:out:rw",
    );
    const { worker } = await rt.clients.catalog.getWorker({ worker: { runtimeId: rt.runtimeId, workerId: id } });
    expect(worker?.mounts.map((m) => [m.root, m.path, m.name, m.writable])).toEqual([
      ["ws", "shared/docs", "docs", false],
      ["ws", "out", "out", true],
    ]);
    const got = await cli("workers", "get", id);
    expect(got.stdout).toContain("mounts: /mounts/docs = ws/shared/docs (read-only), /mounts/out = ws/out (writable)");
    // Its three leases, told apart by what they are for; piped, tab-separated without a header.
    const leases = (await cli("runtime", "allocations")).stdout.split("\n").filter((line) => line.includes(id));
    expect(leases.map((line) => line.split("\t").slice(0, 5))).toEqual([
      [id, "ws", "mounted-proj", "write", "workspace"],
      [id, "ws", "shared/docs", "read", "mount docs"],
      [id, "ws", "out", "write", "mount out"],
    ]);
    const json = jsonLines((await cli("runtime", "allocations", "--output", "json")).stdout).filter(
      (entry) => (entry.holder as { workerId?: string } | undefined)?.workerId === id,
    );
    expect(json.map((entry) => entry.mountName ?? "")).toEqual(["", "docs", "out"]);
    const malformed = await cli("workers", "create", "--profile", "companion", "--workspace", "ws/m2", "--mount", "ws:only-two");
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain("--mount wants ROOT:PATH:NAME or ROOT:PATH:NAME:rw");
    // Without --workspace the client refuses it, naming both flags, before any call (the runtime refuses it
    // too: test/server/field-rules.test.ts).
    const refused = await cli("workers", "create", "--profile", "companion", "--mount", "ws:x:x");
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("--mount ws:x:x needs --workspace");
  });

  it("lists every page", async () => {
    const ids = await Promise.all(
      Array.from({ length: 3 }, (_, i) =>
        rt.clients.catalog.createWorker({
          runtimeId: rt.runtimeId,
          profile: { source: { case: "builtin", value: "companion" } },
          labels: { page: "yes", i: String(i) },
        }),
      ),
    );
    // A page size of 1 is the server's choice only through the API; the CLI reads until next_page_token is empty,
    // so all three arrive whatever the page size.
    const listed = jsonLines((await cli("workers", "list", "--label", "page=yes", "--output", "json")).stdout);
    expect(listed.map((w) => (w.ref as { workerId: string }).workerId).sort()).toEqual(ids.map((r) => r.worker?.ref?.workerId).sort());
  });
});

describe("send, transcript, cancel, approve and reject", () => {
  it("send streams the reply and exits 0; --output json is one event per line", async () => {
    const id = await createWorker();
    rt.fake.enqueue(reply({ text: "Hello there, friend." }));
    const sent = await cli("send", id, "hi");
    expect(sent.stderr).toBe("");
    expect(sent.code).toBe(0);
    expect(sent.stdout).toBe("Hello there, friend.\n");

    rt.fake.enqueue(reply({ text: "Second." }));
    const json = await runClient(["send", id, "--output", "json"], { server: rt.url, input: "from stdin\n" });
    expect(json.code).toBe(0);
    const lines = jsonLines(json.stdout);
    expect(lines[0]).toHaveProperty("run");
    const events = lines.slice(1).map((line) => line.event as Record<string, unknown>);
    expect(events.length).toBeGreaterThan(1);
    const deltas = events.flatMap((e) => (e.textDelta ? [(e.textDelta as { text: string }).text] : []));
    expect(deltas.join("")).toBe("Second.");
    expect(rt.fake.requests.at(-1)?.body.messages.at(-1)?.content).toBe("from stdin");
    const last = events.filter((e) => e.runChanged).at(-1)?.runChanged as { status: string };
    expect(last.status).toBe("RUN_STATUS_COMPLETED");

    const tail = await cli("transcript", id, "--tail", "2");
    expect(tail.stdout).toBe("> from stdin\nSecond.\n");
    const after = jsonLines((await cli("transcript", id, "--after", "1", "--output", "json")).stdout);
    expect(after.map((e) => e.seq)).toEqual(["2", "3", "4"]);
    const full = await rt.clients.observation.readTranscript({ worker: { runtimeId: rt.runtimeId, workerId: id } });
    expect(full.entries.map((e) => String(e.seq))).toEqual(["1", "2", "3", "4"]);

    // The fake sent no usage: the totals are not shown as 0 tokens measured.
    const got = await cli("workers", "get", id);
    expect(got.stdout).toContain("usage: 0 in, 0 out (2 of 2 model requests reported no usage)\n");
  });

  it("a busy worker: reject exits 6 with the reason, enqueue waits its turn, cancel ends the run, interrupt takes over", async () => {
    const id = await createWorker();
    const ref = { runtimeId: rt.runtimeId, workerId: id };
    rt.fake.enqueue({ kind: "stream", chunks: [], end: "hang" });
    const { run } = await rt.clients.interaction.sendInput({ worker: ref, input: { text: "first" } });
    const busy = await cli("send", id, "second");
    expect(busy.code).toBe(6);
    expect(busy.stderr).toBe(`worker-runtime: worker ${id} is busy with run ${run?.runId} (reason: WORKER_BUSY)\n`);
    const jsonBusy = await cli("send", id, "second", "--output", "json");
    expect(jsonBusy.code).toBe(6);
    expect(jsonLines(jsonBusy.stderr)[0]).toMatchObject({ error: { reason: "WORKER_BUSY", code: "FailedPrecondition" } });

    // --busy enqueue waits its turn: the run starts when the one in flight is cancelled.
    rt.fake.enqueue(reply({ text: "Queued reply." }));
    const queued = runClient(["send", id, "queued", "--busy", "enqueue"], { server: rt.url });
    await eventually(async () => (await rt.clients.catalog.getWorker({ worker: ref })).worker?.queuedRuns === 1, 20_000, "a queued run");
    const cancelled = await cli("cancel", id);
    expect(cancelled).toMatchObject({ code: 0, stdout: `cancelled run ${run?.runId}: CANCELLED\n` });
    expect((await rt.clients.interaction.getRun({ worker: ref, runId: run?.runId ?? "" })).run?.status).toBe(RunStatus.CANCELLED);
    expect(await queued).toMatchObject({ code: 0, stdout: "Queued reply.\n" });
    // Cancelling an ended run again prints its final state; with no run in flight there is nothing to cancel.
    expect(await cli("cancel", id, run?.runId ?? "")).toMatchObject({ code: 0, stdout: `cancelled run ${run?.runId}: CANCELLED\n` });
    expect((await cli("cancel", id)).code).toBe(5);

    // --busy interrupt cancels the run in flight and answers at once.
    rt.fake.enqueue({ kind: "stream", chunks: [], end: "hang" }, reply({ text: "Interrupting." }));
    const hanging = (await rt.clients.interaction.sendInput({ worker: ref, input: { text: "long" } })).run;
    const interrupting = await cli("send", id, "now", "--busy", "interrupt");
    expect(interrupting).toMatchObject({ code: 0, stdout: "Interrupting.\n" });
    expect((await rt.clients.interaction.getRun({ worker: ref, runId: hanging?.runId ?? "" })).run?.status).toBe(RunStatus.CANCELLED);
  });

  it("workers list, get and watch say when a worker's run waits for approval, and stop saying it once it is answered", async () => {
    const id = (await cli("workers", "create", "--profile", "careful", "--capability", "fs.read", "--workspace", "ws")).stdout.trim();
    const worker = { runtimeId: rt.runtimeId, workerId: id };
    const watching = startClient(["watch", id], { server: rt.url });
    try {
      await eventually(() => watching.stdout().includes(`[worker ${id} IDLE]`), 20_000, "the snapshot");
      rt.fake.enqueue(reply({ toolCalls: [{ id: "call-w", name: "list_files", arguments: "{}" }] }), reply({ text: "Listed." }));
      const { run } = await rt.clients.interaction.sendInput({ worker, input: { text: "list please" } });
      const runId = run?.runId ?? "";
      const status = async () => (await rt.clients.interaction.getRun({ worker, runId })).run?.status;
      await eventually(async () => (await status()) === RunStatus.AWAITING_APPROVAL, 20_000, "approval");
      const statusColumn = async () => {
        const listed = await cli("workers", "list");
        return listed.stdout
          .split("\n")
          .find((line) => line.startsWith(`${id}\t`))
          ?.split("\t")[1];
      };
      expect(await statusColumn()).toBe("RUNNING (AWAITING_APPROVAL)");
      expect((await cli("workers", "get", id)).stdout).toContain("status: RUNNING (AWAITING_APPROVAL)\n");
      const [json] = jsonLines((await cli("workers", "get", id, "--output", "json")).stdout);
      expect(json).toMatchObject({ status: "WORKER_STATUS_RUNNING", activeRunState: "ACTIVE_RUN_STATE_AWAITING_APPROVAL" });
      // watch words the worker's change the same way.
      await eventually(() => watching.stdout().includes(`[worker ${id} RUNNING (AWAITING_APPROVAL)]`), 20_000, "watch's line");

      await rt.clients.interaction.resolveApproval({ worker, runId, toolCallId: "call-w", decision: ApprovalDecision.APPROVE });
      await eventually(async () => (await status()) === RunStatus.COMPLETED, 20_000, "the run's end");
      await eventually(async () => (await statusColumn()) === "IDLE", 20_000, "IDLE listed");
      expect((await cli("workers", "get", id)).stdout).toContain("status: IDLE\n");
      await eventually(() => watching.stdout().trimEnd().endsWith(`[worker ${id} IDLE]`), 20_000, "watch's IDLE");
    } finally {
      watching.kill();
    }
  }, 180_000);

  it("approve and reject resolve a pending tool call; the call and the request show inline", async () => {
    const created = await cli("workers", "create", "--profile", "careful", "--capability", "fs.read", "--workspace", "ws");
    const id = created.stdout.trim();
    const ref = { runtimeId: rt.runtimeId, workerId: id };
    rt.fake.enqueue(
      reply({ toolCalls: [{ id: "call-1", name: "list_files", arguments: "{}" }] }),
      reply({ text: "Listed." }),
      reply({ toolCalls: [{ id: "call-2", name: "list_files", arguments: "{}" }] }),
      reply({ text: "Fine, not listing." }),
    );
    const sending = runClient(["send", id, "list please"], { server: rt.url });
    await eventually(async () => (await rt.clients.catalog.getWorker({ worker: ref })).worker?.activeRunId !== "", 20_000, "a run");
    await eventually(
      async () => {
        const { worker } = await rt.clients.catalog.getWorker({ worker: ref });
        const { run } = await rt.clients.interaction.getRun({ worker: ref, runId: worker?.activeRunId ?? "" });
        return run?.status === RunStatus.AWAITING_APPROVAL;
      },
      20_000,
      "approval",
    );
    const approved = await cli("approve", id, "call-1");
    expect(approved.code).toBe(0);
    expect(approved.stdout).toMatch(/^approved call-1; run \S+: /);
    // Repeating the command (its answer lost) is a retry: the run, not APPROVAL_NOT_PENDING.
    const runId = /run (\S+):/.exec(approved.stdout)?.[1] ?? "";
    const repeated = await cli("approve", id, "call-1", "--run", runId);
    expect(repeated.code).toBe(0);
    expect(repeated.stdout).toMatch(new RegExp(`^approved call-1; run ${runId}: `));
    const otherDecision = await cli("reject", id, "call-1", "--run", runId);
    expect(otherDecision.code).not.toBe(0);
    expect(otherDecision.stderr).toContain("APPROVAL_NOT_PENDING");
    const decided = (await rt.clients.interaction.getRun({ worker: ref, runId })).run;
    expect(decided?.resolvedApprovals.map((r) => r.requestId)).toEqual([decisionRequestId(ApprovalDecision.APPROVE, "call-1", "")]);
    const sent = await sending;
    expect(sent.code).toBe(0);
    // The hint is the safe command: with --run, a retry of it cannot decide a later run's call.
    expect(sent.stdout).toContain(`? list_files {} needs approval: worker-runtime approve ${id} call-1 --run ${runId} (or reject)`);
    expect(sent.stdout).toContain("→ list_files {}");
    expect(sent.stdout).toContain("← list_files: ");
    expect(sent.stdout.trimEnd().endsWith("Listed.")).toBe(true);

    const second = runClient(["send", id, "again"], { server: rt.url });
    await eventually(
      async () => {
        const { worker } = await rt.clients.catalog.getWorker({ worker: ref });
        if (!worker?.activeRunId) return false;
        return (
          (await rt.clients.interaction.getRun({ worker: ref, runId: worker.activeRunId })).run?.status === RunStatus.AWAITING_APPROVAL
        );
      },
      20_000,
      "second approval",
    );
    expect((await cli("reject", id, "call-2", "--reason", "not now", "--request-id", "my-reject")).code).toBe(0);
    const rejected = await second;
    const secondRunId = (await rt.clients.interaction.listRuns({ worker: ref })).runs[0]?.runId ?? "";
    const secondRun = (await rt.clients.interaction.getRun({ worker: ref, runId: secondRunId })).run;
    expect(secondRun?.resolvedApprovals).toEqual([
      expect.objectContaining({ requestId: "my-reject", toolCallId: "call-2", reason: "not now" }),
    ]);
    expect(rejected.code).toBe(0);
    expect(rejected.stdout.trimEnd().endsWith("Fine, not listing.")).toBe(true);
    const toolResult = rt.fake.requests.at(-1)?.body.messages.find((m) => m.role === "tool" && m.tool_call_id === "call-2");
    expect(toolResult?.content).toContain("not now");
  });

  it("watch prints the worker's state, the exchange and run changes as they happen", async () => {
    const id = await createWorker();
    const watching = startClient(["watch", id], { server: rt.url });
    try {
      await eventually(() => watching.stdout().includes(`[worker ${id} IDLE]`), 20_000, "the snapshot");
      rt.fake.enqueue(reply({ text: "Watched reply." }));
      const { run } = await rt.clients.interaction.sendInput({
        worker: { runtimeId: rt.runtimeId, workerId: id },
        input: { text: "hello" },
      });
      await eventually(() => watching.stdout().includes(`[run ${run?.runId} COMPLETED]`), 20_000, "the run's end");
      const lines = watching.stdout().split("\n");
      expect(lines).toContain("> hello");
      expect(lines).toContain("Watched reply.");
      expect(lines).toContain(`[worker ${id} RUNNING]`);
      expect(lines.indexOf("> hello")).toBeLessThan(lines.indexOf("Watched reply."));
    } finally {
      watching.kill();
    }
  });

  it("chat sends each line and streams each reply", async () => {
    const id = await createWorker();
    rt.fake.enqueue(reply({ text: "One." }), reply({ text: "Two." }));
    const chat = await runClient(["chat", id], { server: rt.url, input: "first\nsecond\n" });
    expect(chat.stderr).toBe("");
    expect(chat.code).toBe(0);
    expect(chat.stdout).toBe("One.\nTwo.\n");
    const transcript = await rt.clients.observation.readTranscript({ worker: { runtimeId: rt.runtimeId, workerId: id } });
    expect(transcript.entries.map((e) => e.content.case)).toEqual(["userMessage", "assistantMessage", "userMessage", "assistantMessage"]);
  });
});

describe("errors and help", () => {
  it("not found exits 5 with the sentence and reason", async () => {
    const missing = await cli("workers", "get", "w-missing");
    expect(missing).toMatchObject({ code: 5, stdout: "", stderr: 'worker-runtime: worker "w-missing" not found (reason: NOT_FOUND)\n' });
  });

  it("an unreachable server exits 3", async () => {
    const down = await runClient(["workers", "list"], { server: "http://127.0.0.1:1" });
    expect(down.code).toBe(3);
    expect(down.stderr).toMatch(/^worker-runtime: cannot reach http:\/\/127\.0\.0\.1:1: .* \(reason: Unavailable\)\n$/);
  });

  it("a bad command line exits 2", async () => {
    expect((await cli("workers", "list", "--status", "sleeping")).code).toBe(2);
    expect((await cli("send")).code).toBe(2);
    expect((await cli("workers", "frobnicate")).code).toBe(2);
    expect((await cli("workers", "list", "--no-such-flag")).code).toBe(2);
  });

  it("--help works on every subcommand and lists the exit codes", async () => {
    const commands = [
      ["runtime", "info"],
      ["runtime", "diagnostics"],
      ["runtime", "allocations"],
      ["runtimes", "list"],
      ["workers", "list"],
      ["workers", "create"],
      ["workers", "get"],
      ["workers", "stop"],
      ["workers", "delete"],
      ["send"],
      ["cancel"],
      ["approve"],
      ["reject"],
      ["watch"],
      ["transcript"],
      ["chat"],
    ];
    // Four at a time: sixteen Node processes at once starved a loaded 2-core CI machine past the timeout.
    const results: Awaited<ReturnType<typeof runClient>>[] = [];
    for (let start = 0; start < commands.length; start += 4) {
      results.push(...(await Promise.all(commands.slice(start, start + 4).map((words) => runClient([...words, "--help"])))));
    }
    results.forEach((result, index) => {
      expect(result.code, commands[index]?.join(" ")).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^usage: worker-runtime ${commands[index]?.join(" ")}`));
      expect(result.stdout).toContain("exit codes:");
      expect(result.stdout).toContain("130 send: run cancelled");
    });
    // Every flag the usage line of these names has a line saying what it does.
    const described = (stdout: string, flag: string): boolean => new RegExp(`^ +${flag} +\\S`, "m").test(stdout);
    const create = results[commands.findIndex((words) => words.join(" ") === "workers create")]?.stdout ?? "";
    for (const flag of ["--profile", "--workspace", "--capability", "--mount", "--label", "--name", "--intent", "--request-id"])
      expect(described(create, flag), `workers create ${flag}`).toBe(true);
    const chat = results[commands.findIndex((words) => words.join(" ") === "chat")]?.stdout ?? "";
    expect(described(chat, "--busy"), "chat --busy").toBe(true);
    const top = await runClient(["--help"]);
    expect(top.stdout).toContain("workers list");
    expect(top.stdout).toContain("exit codes:");
  }, 180_000);
});

describe("typed errors from other runtimes", () => {
  it("a worker without a provider: send exits 7 with WORKER_NOT_CONNECTED", async () => {
    const bare = await serveRuntime({ provider: false, runtimeId: "rt-bare" });
    try {
      const id = (await runClient(["workers", "create", "--profile", "companion"], { server: bare.url })).stdout.trim();
      const sent = await runClient(["send", id, "hi"], { server: bare.url });
      expect(sent.code).toBe(7);
      expect(sent.stderr).toMatch(
        /^worker-runtime: worker \S+ cannot run input: no model provider configured.* \(reason: WORKER_NOT_CONNECTED\)\n$/,
      );
    } finally {
      await bare.close();
    }
  });

  it("a wrong or missing token exits 4; --token-file and the variable both work", async () => {
    const guarded = await serveRuntime({ token: "s3cret-token", runtimeId: "rt-guarded" });
    try {
      const none = await runClient(["workers", "list"], { server: guarded.url });
      expect(none.code).toBe(4);
      expect(none.stderr).toMatch(/\(reason: UNAUTHENTICATED\)\n$/);
      const wrong = await runClient(["runtime", "info"], { server: guarded.url, env: { WORKER_RUNTIME_TOKEN: "nope" } });
      expect(wrong.code).toBe(4);
      const viaEnv = await runClient(["runtime", "info"], { server: guarded.url, env: { WORKER_RUNTIME_TOKEN: "s3cret-token" } });
      expect(viaEnv.code).toBe(0);
      const viaFile = await runClient(["workers", "list", "--token-file", `${guarded.dir}/token`, "--server", guarded.url]);
      expect(viaFile.code).toBe(0);
    } finally {
      await guarded.close();
    }
  });
});
