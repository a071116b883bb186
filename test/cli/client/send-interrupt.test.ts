import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStatus } from "../../../gen/worker_runtime/v1/run_pb.js";
import { replyChunks } from "../../support/openai-chunks.js";
import { eventually } from "../../support/harness.js";
import { serveRuntime, startClient, type ServedRuntime } from "./client-support.js";

/**
 * Ctrl-C during `send` cancels the run on the server (not just the local
 * stream), prints what had streamed, and exits with the cancelled status.
 * During `watch` it just stops watching: exit 0, the run untouched.
 */

let rt: ServedRuntime;

beforeAll(async () => {
  rt = await serveRuntime({ runtimeId: "rt-sigint" });
});

afterAll(async () => {
  await rt?.close();
});

describe("send and Ctrl-C", () => {
  it("SIGINT leaves the run CANCELLED and exits 130", async () => {
    const { worker } = await rt.clients.catalog.createWorker({
      runtimeId: rt.runtimeId,
      profile: { source: { case: "builtin", value: "companion" } },
    });
    const ref = { runtimeId: rt.runtimeId, workerId: worker?.ref?.workerId ?? "" };
    // Some text, then the provider never finishes.
    rt.fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "Partial answer" }).slice(0, -1), end: "hang" });
    const send = startClient(["send", ref.workerId, "tell me everything"], { server: rt.url });
    await eventually(() => send.stdout().includes("Partial answer"), 30_000, "the streamed text");
    const { worker: busy } = await rt.clients.catalog.getWorker({ worker: ref });
    const runId = busy?.activeRunId ?? "";
    expect(runId).not.toBe("");

    send.child.kill("SIGINT");
    const exit = await send.exited;
    expect(exit).toEqual({ code: 130, signal: null });
    expect(send.stdout()).toContain("Partial answer");
    expect(send.stdout()).toContain(`[run ${runId} CANCELLED]`);
    const { run } = await rt.clients.interaction.getRun({ worker: ref, runId });
    expect(run?.status).toBe(RunStatus.CANCELLED);
    // What streamed before the cancel stays committed.
    const transcript = await rt.clients.observation.readTranscript({ worker: ref });
    expect(transcript.entries.at(-1)?.content).toMatchObject({ case: "assistantMessage", value: { text: "Partial answer" } });
  });
});

describe("watch and Ctrl-C", () => {
  it("SIGINT mid-run stops watching with exit 0, leaves the run going and prints no error", async () => {
    const { worker } = await rt.clients.catalog.createWorker({
      runtimeId: rt.runtimeId,
      profile: { source: { case: "builtin", value: "companion" } },
    });
    const ref = { runtimeId: rt.runtimeId, workerId: worker?.ref?.workerId ?? "" };
    rt.fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "Watched words" }).slice(0, -1), end: "hang" });
    const watch = startClient(["watch", ref.workerId], { server: rt.url });
    await eventually(() => watch.stdout().includes("IDLE"), 30_000, "the snapshot");
    const sent = await rt.clients.interaction.sendInput({ worker: ref, input: { text: "go" } });
    const runId = sent.run?.runId ?? "";
    await eventually(() => watch.stdout().includes("Watched words"), 30_000, "the streamed text");

    watch.child.kill("SIGINT");
    expect(await watch.exited).toEqual({ code: 0, signal: null });
    expect(watch.stderr()).toBe("");
    const { run } = await rt.clients.interaction.getRun({ worker: ref, runId });
    expect(run?.status).toBe(RunStatus.RUNNING);
    await rt.clients.interaction.cancelRun({ worker: ref, runId });
  });
});
