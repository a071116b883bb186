import { create } from "@bufbuild/protobuf";
import { mkdir, mkdtemp, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ProfileSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { ActiveRunState, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { companionProfile, createOpenAIBackend } from "../../src/engine/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { collectedStreams } from "../support/followed-stream.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { type Clients, eventually } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";

/**
 * Worker.active_run_state through a Backend, from a remote runtime (a real
 * server over HTTP/2) and from the embedded one: GetWorker, the fanned-out
 * ListWorkers, a relayed WatchWorker (snapshot and worker-changed events)
 * and WatchRuntime say AWAITING_APPROVAL while a run waits for approval, as
 * the runtime does, over gRPC, Connect JSON (the relay's decoded path) and
 * the console's transport (Connect, binary, over HTTP/1.1).
 */

const { UNSPECIFIED, RUNNING, AWAITING_APPROVAL } = ActiveRunState;
type Route = "backend grpc" | "backend connect" | "console";

let fake: FakeOpenAI;
let base: string;
let served: BackendWithRemote;
let routes: Record<Route, Clients>;
const streams = collectedStreams();

beforeAll(async () => {
  fake = await startFakeOpenAI();
  base = await realpath(await mkdtemp(join(tmpdir(), "wr-backend-active-run-state-")));
  await mkdir(join(base, "root"));
  const careful = create(ProfileSchema, { ...companionProfile("gpt-4o-mini"), name: "careful", approvalRequiredTools: ["write_file"] });
  const runtimeOf = (runtimeId: string) =>
    createRuntime({
      logger: silentLogger,
      runtimeId,
      executionBackend: createOpenAIBackend({ apiKey: "sk-backend-test", baseURL: fake.baseURL, profiles: [careful] }),
      workspaceRoots: { work: join(base, "root") },
    });
  served = await startBackendWithRemote({ remote: await runtimeOf("rs"), embedded: await runtimeOf("emb") });
  routes = {
    "backend grpc": served.clients("grpc"),
    "backend connect": served.clients("connect"),
    console: served.consoleClients(),
  };
}, 60_000);

afterAll(async () => {
  streams.abortAll();
  await served?.close();
  await fake?.close();
  if (base) await rm(base, { recursive: true, force: true });
});

/** What each route shows of the worker's active run state: GetWorker, ListWorkers, a new watch's snapshot. */
async function shown(worker: WorkerRef): Promise<Record<string, ActiveRunState | undefined>> {
  const seen: Record<string, ActiveRunState | undefined> = {};
  for (const [route, clients] of Object.entries(routes)) {
    seen[`${route} GetWorker`] = (await clients.catalog.getWorker({ worker })).worker?.activeRunState;
    const { workers } = await clients.catalog.listWorkers({ runtimeId: "" });
    seen[`${route} ListWorkers`] = workers.find((w) => w.ref?.workerId === worker.workerId)?.activeRunState;
    const controller = new AbortController();
    for await (const message of clients.observation.watchWorker({ worker }, { signal: controller.signal })) {
      seen[`${route} snapshot`] = message.snapshot?.worker?.activeRunState;
      break;
    }
    controller.abort();
  }
  return seen;
}

function allOf(state: ActiveRunState): Record<string, ActiveRunState> {
  const keys = Object.keys(routes).flatMap((route) => [`${route} GetWorker`, `${route} ListWorkers`, `${route} snapshot`]);
  return Object.fromEntries(keys.map((key) => [key, state]));
}

/** The states a list of announced workers went through, repeats dropped. */
function changes(workers: Worker[]): ActiveRunState[] {
  return workers.map((w) => w.activeRunState).filter((state, i, all) => i === 0 || state !== all[i - 1]);
}

describe.each(["rs", "emb"])("a worker of runtime %s waiting for approval, through the Backend", (runtimeId) => {
  it("shows AWAITING_APPROVAL in every view and event while it waits, and UNSPECIFIED once the run has ended", async () => {
    const clients = routes["backend grpc"];
    const { worker: created } = await clients.catalog.createWorker({
      runtimeId,
      capabilities: ["fs.write"],
      workspace: { root: "work", path: runtimeId },
      profile: { source: { case: "builtin", value: "careful" } },
    });
    const worker = created?.ref as WorkerRef;
    const workerEvents = streams.collect((signal) => routes["backend connect"].observation.watchWorker({ worker }, { signal }));
    const runtimeEvents = streams.collect((signal) => clients.observation.watchRuntime({ runtimeId }, { signal }));
    const announced = (): Worker[] =>
      workerEvents.flatMap((m) => m.events.flatMap((e) => (e.kind.case === "workerChanged" ? [e.kind.value] : [])));
    const published = (): Worker[] =>
      runtimeEvents.flatMap((m) =>
        m.events.flatMap((e) => (e.kind.case === "workerUpdated" && e.kind.value.ref?.workerId === worker.workerId ? [e.kind.value] : [])),
      );
    await eventually(() => workerEvents.length > 0 && runtimeEvents.length > 0, 10_000, "both watches open");

    fake.enqueue(reply({ toolCalls: [{ id: "w1", name: "write_file", arguments: JSON.stringify({ path: "a.txt", content: "A" }) }] }));
    const { run } = await clients.interaction.sendInput({ worker, input: { text: "write a" } });
    const runId = run?.runId ?? "";
    await eventually(() => announced().at(-1)?.activeRunState === AWAITING_APPROVAL, 10_000, "worker-changed AWAITING_APPROVAL");
    await eventually(() => published().at(-1)?.activeRunState === AWAITING_APPROVAL, 10_000, "worker-updated AWAITING_APPROVAL");
    expect(await shown(worker)).toEqual(allOf(AWAITING_APPROVAL));

    fake.enqueue(reply({ text: "wrote it" }));
    await clients.interaction.resolveApproval({ worker, runId, toolCallId: "w1", decision: ApprovalDecision.APPROVE });
    await eventually(
      async () => (await clients.interaction.getRun({ worker, runId })).run?.status === RunStatus.COMPLETED,
      10_000,
      "run end",
    );
    await eventually(() => announced().at(-1)?.activeRunState === UNSPECIFIED, 10_000, "worker-changed UNSPECIFIED");
    await eventually(() => published().at(-1)?.activeRunState === UNSPECIFIED, 10_000, "worker-updated UNSPECIFIED");
    expect(await shown(worker)).toEqual(allOf(UNSPECIFIED));
    expect(changes(announced())).toEqual([RUNNING, AWAITING_APPROVAL, RUNNING, UNSPECIFIED]);
    expect(changes(published())).toEqual([RUNNING, AWAITING_APPROVAL, RUNNING, UNSPECIFIED]);
  });
});
