import { chmod, mkdir, mkdtemp, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { connectTo, type ClientSet } from "../backend/processes.js";
import { startCli, type CliProcess } from "../support/cli-process.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { eventually } from "../support/harness.js";
import { type LogLine, parseLogLines } from "../support/log-lines.js";
import { errorReply, reply } from "../support/openai-chunks.js";

/**
 * Redaction, checked on real processes: a `serve` runtime and a `backend`
 * over it, both at the most verbose level, with a bearer token on each, an
 * OpenAI key and host secrets, run the end-to-end scenarios (a prompt, an
 * answer and a tool call carrying marker strings, a tool reading a marker
 * file, provider errors whose bodies echo a marker, a watch the client
 * cancels). Every line both write to stderr must be JSON, and none may
 * contain a marker, token, key or secret. With payload logging on, the
 * model's text does reach the log, so the scan is able to fail.
 */

const MARKS = {
  prompt: "prompt-mark-5a1e93",
  answer: "answer-mark-c04b7d",
  toolArgument: "tool-arg-mark-e81f22",
  toolOutput: "tool-output-mark-4d9a06",
  providerError: "provider-error-mark-b37c18",
};
const SECRETS = {
  openaiKey: "sk-scan-openai-key-0f3d9e",
  runtimeToken: "tok-scan-runtime-71c2aa",
  backendToken: "tok-scan-backend-9b4e10",
  hostSecretFile: "host-secret-file-2e6c5f",
  hostSecretEnv: "host-secret-env-8d1a73",
};
const VERBOSE = {
  WORKER_RUNTIME_LOG_LEVEL: "trace",
  OPENAI_API_KEY: SECRETS.openaiKey,
  WORKER_RUNTIME_SECRET_SCAN_ENV: SECRETS.hostSecretEnv,
};

let fake: FakeOpenAI;
let base: string;
const processes: CliProcess[] = [];
const clients: ClientSet[] = [];

beforeAll(async () => {
  fake = await startFakeOpenAI();
  base = await realpath(await mkdtemp(join(tmpdir(), "wr-log-scan-")));
  await mkdir(join(base, "root", "ws"), { recursive: true });
  await writeFile(join(base, "root", "ws", "seed.txt"), `the file says ${MARKS.toolOutput}`);
  await writeFile(join(base, "runtime.token"), SECRETS.runtimeToken);
  await writeFile(join(base, "backend.token"), SECRETS.backendToken);
  await writeFile(join(base, "secrets.json"), JSON.stringify({ SCAN_FILE: SECRETS.hostSecretFile }));
  await chmod(join(base, "secrets.json"), 0o600);
});

afterAll(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const cli of processes.splice(0)) cli.kill();
  await fake?.close();
  if (base) await rm(base, { recursive: true, force: true });
});

function start(args: string[], env: Record<string, string>): CliProcess {
  const cli = startCli(args, env);
  processes.push(cli);
  return cli;
}

/** A `serve` runtime with a token, host secrets and a workspace root, against the fake provider. */
function serveRuntime(env: Record<string, string>): CliProcess {
  return start(
    [
      "serve",
      "--port",
      "0",
      "--runtime-id",
      "rt-scan",
      "--token-file",
      join(base, "runtime.token"),
      "--secrets-file",
      join(base, "secrets.json"),
      "--workspace-root",
      `work=${join(base, "root")}`,
      "--openai-base-url",
      fake.baseURL,
    ],
    env,
  );
}

/** SIGTERMs a process and waits for it to exit (its shutdown lines are part of the scan). */
async function stop(cli: CliProcess): Promise<void> {
  cli.child.kill("SIGTERM");
  await cli.exited;
}

async function waitForRun(client: ClientSet, worker: WorkerRef, runId: string, status: RunStatus): Promise<Run> {
  let last: Run | undefined;
  await eventually(
    async () => {
      last = (await client.interaction.getRun({ worker, runId })).run;
      return last?.status === status;
    },
    30_000,
    `run ${runId} ${RunStatus[status]}`,
  );
  return last as Run;
}

/** The scenarios, through `client`, on the runtime "rt-scan". */
async function runScenarios(client: ClientSet): Promise<void> {
  const { worker } = await client.catalog.createWorker({
    runtimeId: "rt-scan",
    capabilities: ["fs.read", "fs.write"],
    workspace: { root: "work", path: "ws" },
  });
  const ref = worker?.ref;
  if (!ref) throw new Error("no worker");

  // A watch the client cancels after its first message.
  const abort = new AbortController();
  const watched = (async () => {
    for await (const _ of client.observation.watchWorker({ worker: ref }, { signal: abort.signal })) abort.abort();
  })();
  await expect(watched).rejects.toThrow();

  // A run with marker text, a tool call with marker arguments and a tool whose output is a marker.
  fake.enqueue(
    reply({
      text: `Let me look. ${MARKS.answer}`,
      toolCalls: [
        { id: "c1", name: "write_file", arguments: JSON.stringify({ path: "out.txt", content: MARKS.toolArgument }) },
        { id: "c2", name: "read_file", arguments: JSON.stringify({ path: "seed.txt" }) },
      ],
    }),
    reply({ text: `Done: ${MARKS.answer}` }),
  );
  const first = await client.interaction.sendInput(
    { worker: ref, input: { text: `please ${MARKS.prompt}` } },
    { headers: { "x-request-id": "req-scan-0001" } },
  );
  await waitForRun(client, ref, first.run?.runId ?? "", RunStatus.COMPLETED);

  // A provider error echoing the prompt: retried once (a 500), then refused (a 400).
  fake.enqueue(
    errorReply(500, `overloaded while reading "${MARKS.providerError}"`),
    errorReply(400, `bad request: "${MARKS.providerError}"`),
  );
  const second = await client.interaction.sendInput({ worker: ref, input: { text: `again ${MARKS.prompt}` } });
  const failed = await waitForRun(client, ref, second.run?.runId ?? "", RunStatus.FAILED);
  // The client still sees the provider's message: only the logs are kept clean.
  expect(failed.error?.message).toContain(MARKS.providerError);
}

describe("the log scan", () => {
  it("finds no model text, tool payload, provider error body, token, key or secret in any line of a runtime and a backend at trace level", async () => {
    const runtime = serveRuntime(VERBOSE);
    const runtimeAddress = (await runtime.listening).h2c;
    const backend = start(["backend", "--port", "0", "--runtime-id", "rt-emb", "--token-file", join(base, "backend.token")], VERBOSE);
    const client = connectTo((await backend.listening).h2c, SECRETS.backendToken);
    clients.push(client);
    // Added at run time, with its token in the request: the connection's background calls must not carry this call's id.
    await client.registry.addRuntime(
      { runtimeId: "rt-scan", url: `http://${runtimeAddress}`, bearerToken: SECRETS.runtimeToken },
      { headers: { "x-request-id": "req-add-0001" } },
    );
    await eventually(
      async () => (await client.registry.listRuntimes({})).runtimes.every((r) => r.health === RuntimeHealth.READY),
      20_000,
      "rt-scan READY",
    );

    await runScenarios(client);
    client.close();
    await stop(backend);
    await stop(runtime);

    const lines = { runtime: parseLogLines(runtime.stderr()), backend: parseLogLines(backend.stderr()) };
    for (const [name, logged] of Object.entries(lines)) {
      const text = logged.map((line) => JSON.stringify(line)).join("\n");
      for (const needle of [...Object.values(MARKS), ...Object.values(SECRETS)]) {
        expect(text.includes(needle), `${name} logged ${needle}`).toBe(false);
      }
      // The scan saw the verbose lines it is meant to check, not an empty log.
      expect(logged.filter((line) => line.level === "debug").length, name).toBeGreaterThan(5);
      // A cancelled watch, relayed or not, is no error; the only warning is the provider's 500.
      expect(
        logged.filter((line) => line.level === "error"),
        name,
      ).toEqual([]);
      expect(logged.filter((line) => line.level === "warn" && line.message !== "model request failed; retrying")).toEqual([]);
    }
    const runLines = lines.runtime.filter((line: LogLine) => line.message === "model answered" || line.message === "tool call ended");
    // Two answers (tool calls, then text) and two tool calls.
    expect(runLines).toHaveLength(4);
    for (const line of runLines) {
      expect(line).toMatchObject({
        runtime_id: "rt-scan",
        worker_id: expect.any(String),
        run_id: expect.any(String),
        request_id: expect.any(String),
      });
    }
    expect(lines.runtime.find((line) => line.message === "model request failed; retrying")).toMatchObject({
      level: "warn",
      http_status: 500,
      detail: "[redacted]",
    });
    expect(lines.backend.filter((line) => line["request_id"] === "req-add-0001")).toEqual([
      expect.objectContaining({ rpc_method: "worker_runtime.v1.RuntimeRegistry/AddRuntime", message: "rpc completed" }),
    ]);
    expect(lines.runtime.filter((line) => line["request_id"] === "req-add-0001")).toEqual([]);
    // The Backend passes the caller's request id on: one id finds the call in both logs.
    const sent = (line: LogLine) =>
      line["request_id"] === "req-scan-0001" && line["rpc_method"] === "worker_runtime.v1.WorkerInteraction/SendInput";
    expect(lines.backend.find((line) => sent(line) && line.message === "rpc completed")).toMatchObject({ runtime_id: "rt-emb" });
    expect(lines.runtime.find((line) => sent(line) && line.message === "rpc completed")).toMatchObject({ runtime_id: "rt-scan" });
  }, 120_000);

  it("shows the model's text when payload logging is on", async () => {
    const runtime = serveRuntime({ ...VERBOSE, WORKER_RUNTIME_LOG_LEVEL: "debug", WORKER_RUNTIME_LOG_PAYLOADS: "1" });
    const client = connectTo((await runtime.listening).h2c, SECRETS.runtimeToken);
    clients.push(client);
    const { worker } = await client.catalog.createWorker({ runtimeId: "rt-scan" });
    const ref = worker?.ref;
    if (!ref) throw new Error("no worker");
    fake.enqueue(reply({ text: `Hello ${MARKS.answer}` }));
    const { run } = await client.interaction.sendInput({ worker: ref, input: { text: "hi" } });
    await waitForRun(client, ref, run?.runId ?? "", RunStatus.COMPLETED);
    client.close();
    await stop(runtime);
    const answered = parseLogLines(runtime.stderr()).find((line) => line.message === "model answered");
    expect(answered?.["text"]).toBe(`Hello ${MARKS.answer}`);
    // Credentials stay out even then.
    expect(runtime.stderr()).not.toContain(SECRETS.openaiKey);
    expect(runtime.stderr()).not.toContain(SECRETS.runtimeToken);
  }, 60_000);

  it("refuses a log level it does not know, before it listens", async () => {
    for (const command of ["serve", "backend"]) {
      const cli = start([command, "--port", "0"], { WORKER_RUNTIME_LOG_LEVEL: "loud" });
      expect((await cli.exited).code).toBe(2);
      expect(cli.stderr()).toContain(
        'WORKER_RUNTIME_LOG_LEVEL="loud" is not a log level; use one of trace, debug, info, warn, error, fatal, silent',
      );
      expect(cli.stdout()).not.toContain("listening");
    }
  });
});
