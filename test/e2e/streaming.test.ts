import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { eventually, PROTOCOLS } from "../support/harness.js";
import { pieces, replyChunks } from "../support/openai-chunks.js";
import { ended, startOpenAIServer, type OpenAIServer } from "./openai-harness.js";

/**
 * Joined deltas through the whole runtime: a burst the provider sends in one
 * write reaches watchers as a few events, and the watchers, the in-flight
 * snapshot and the transcript all hold exactly the characters the provider
 * sent.
 */
describe.each(PROTOCOLS)("provider bursts through the server (%s)", (protocol) => {
  let s: OpenAIServer;
  beforeEach(async () => {
    s = await startOpenAIServer(protocol);
  });
  afterEach(async () => {
    await s.close();
  });

  it("delivers a burst as a few text events with the same text, committed as sent", async () => {
    const worker = await s.newWorker();
    const text = "Streaming text arrives in one go. ".repeat(30);
    s.fake.enqueue({ kind: "stream", chunks: replyChunks({ text, pieceSize: 4 }), oneWrite: true });
    const { run, events } = await s.runToEnd(worker, "go");
    expect(run.status).toBe(RunStatus.COMPLETED);
    const deltas = events.flatMap((e) => (e.kind.case === "textDelta" ? [e.kind.value.text] : []));
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas.length).toBeLessThan(pieces(text, 4).length / 4);
    expect(deltas.join("")).toBe(text);
    const transcript = await s.clients.observation.readTranscript({ worker: worker.ref });
    const answer = transcript.entries.find((e) => e.content.case === "assistantMessage");
    expect(answer?.content.case === "assistantMessage" && answer.content.value.text).toBe(text);
  });

  it("fails a run whose provider sends an event that is not a chunk: a typed error and a notice, the streamed text and nothing else", async () => {
    const worker = await s.newWorker();
    const streamed = replyChunks({ text: "Partial answer", pieceSize: 4 }).slice(0, -1);
    const writes = [...streamed.map((c) => `data: ${JSON.stringify(c)}\n\n`), 'data: {"choices": [\n\n'];
    s.fake.enqueue({ kind: "raw", writes, end: "hang" });
    const { run, events } = await s.runToEnd(worker, "go");
    expect(run.status).toBe(RunStatus.FAILED);
    expect(run.error?.reason).toBe(ErrorReason.PROVIDER_UNAVAILABLE);
    const deltas = events.flatMap((e) => (e.kind.case === "textDelta" ? [e.kind.value.text] : []));
    expect(deltas.join("")).toBe("Partial answer");
    const transcript = await s.clients.observation.readTranscript({ worker: worker.ref });
    const kinds = transcript.entries.map((e) => e.content.case);
    expect(kinds).toEqual(["userMessage", "assistantMessage", "notice"]);
    const [, answer, notice] = transcript.entries;
    expect(answer?.content.case === "assistantMessage" && answer.content.value.text).toBe("Partial answer");
    expect(notice?.content.case === "notice" && notice.content.value.code).toBe("run.failed");
  });

  it("gives a watcher attaching mid-run the same characters in its snapshot that the first watcher got", async () => {
    const worker = await s.newWorker();
    const burst = "Half an answer, then the provider pauses. ".repeat(10);
    // Everything but the finish chunk, then the stream stays open.
    const chunks = replyChunks({ text: burst, pieceSize: 3 }).slice(0, -1);
    s.fake.enqueue({ kind: "stream", chunks, end: "hang" });
    const controller = new AbortController();
    let watched = "";
    const watching = (async () => {
      for await (const message of s.clients.observation.watchWorker({ worker: worker.ref }, { signal: controller.signal })) {
        for (const event of message.events) if (event.kind.case === "textDelta") watched += event.kind.value.text;
      }
    })().catch(() => undefined);
    const { run } = await s.clients.interaction.sendInput({ worker: worker.ref, input: { text: "go" } });
    await eventually(() => watched === burst, 5_000, "the whole burst at the first watcher");
    const snapshot = await firstSnapshot(s, worker.ref);
    expect(snapshot?.inFlight.map((block) => block.text)).toEqual([burst]);
    await s.clients.interaction.cancelRun({ worker: worker.ref, runId: run?.runId ?? "" });
    await s.waitForRun(worker, run?.runId ?? "", ended, "run end");
    controller.abort();
    await watching;
  });
});

async function firstSnapshot(s: OpenAIServer, ref: WorkerRef | undefined) {
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
