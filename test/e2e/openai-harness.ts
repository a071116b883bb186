import { mkdir, mkdtemp, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createOpenAIBackend, type OpenAIBackendOptions } from "../../src/engine/index.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { eventually, startHarness, type Clients, type Harness, type Protocol } from "../support/harness.js";

/** The real server with the OpenAI backend pointed at a fake provider, and one workspace root. */
export interface OpenAIServer {
  fake: FakeOpenAI;
  harness: Harness;
  clients: Clients;
  /** Host directory of the workspace root named "work". */
  root: string;
  /** A directory outside the root. */
  outside: string;
  newWorker(init?: { capabilities?: string[]; path?: string; profile?: string }): Promise<Worker>;
  /** Sends input over StreamInput and collects the run's events until it ends. */
  runToEnd(worker: Worker, text: string): Promise<{ run: Run; events: WorkerEvent[] }>;
  waitForRun(worker: Worker, runId: string, check: (run: Run) => boolean, what: string): Promise<Run>;
  close(): Promise<void>;
}

export const E2E_KEY = "sk-e2e-0123456789-secret";

export async function startOpenAIServer(protocol: Protocol, options: Partial<OpenAIBackendOptions> = {}): Promise<OpenAIServer> {
  const fake = await startFakeOpenAI();
  const base = await realpath(await mkdtemp(join(tmpdir(), "e2e-openai-")));
  const root = join(base, "root");
  const outside = join(base, "outside");
  await mkdir(root);
  await mkdir(outside);
  const backend = createOpenAIBackend({
    apiKey: E2E_KEY,
    baseURL: fake.baseURL,
    retry: { baseDelayMs: 5, maxDelayMs: 20, budgetMs: 1_000 },
    ...options,
  });
  const harness = await startHarness({ executionBackend: backend, workspaceRoots: { work: root }, limits: { cancelGraceMs: 2_000 } });
  const clients = harness.connect(protocol);
  const runtimeId = harness.runtime.runtimeId;

  const server: OpenAIServer = {
    fake,
    harness,
    clients,
    root,
    outside,
    async newWorker(init = {}) {
      const { worker } = await clients.catalog.createWorker({
        runtimeId,
        capabilities: init.capabilities ?? [],
        ...(init.path !== undefined ? { workspace: { root: "work", path: init.path } } : {}),
        ...(init.profile !== undefined ? { profile: { source: { case: "builtin", value: init.profile } } } : {}),
      });
      if (!worker) throw new Error("no worker");
      return worker;
    },
    async runToEnd(worker, text) {
      const events: WorkerEvent[] = [];
      let runId = "";
      for await (const message of clients.interaction.streamInput({ worker: worker.ref, input: { text } })) {
        if (message.run) runId = message.run.runId;
        events.push(...message.events);
      }
      const { run } = await clients.interaction.getRun({ worker: worker.ref, runId });
      if (!run) throw new Error("no run");
      return { run, events };
    },
    async waitForRun(worker, runId, check, what) {
      let last: Run | undefined;
      await eventually(
        async () => {
          last = (await clients.interaction.getRun({ worker: worker.ref, runId })).run;
          return last !== undefined && check(last);
        },
        5_000,
        what,
      );
      return last as Run;
    },
    async close() {
      await harness.close();
      await fake.close();
      await rm(base, { recursive: true, force: true });
    },
  };
  return server;
}

/** Whether a run has ended. */
export function ended(run: Run): boolean {
  return [RunStatus.COMPLETED, RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.INTERRUPTED].includes(run.status);
}
