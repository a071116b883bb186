import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import type { RuntimeEvent, WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import type { TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { eventually, PROTOCOLS, startHarness, type Clients, type Harness } from "../support/harness.js";
import { replyWith, ScriptedBackend, type RunScript } from "../support/scripted-backend.js";
import { STORE_FACTORIES } from "../support/stores.js";

/** Legal inputs just under the 256 KiB input limit: together far over the 4 MiB message limit. */
const INPUTS = 17;
const INPUT_TEXT = (i: number): string => `${i}:`.padEnd(255 * 1024, "x");
/** A long answer, like the 200,000-character replies of the report. */
const ANSWER = "y".repeat(200_000);

/** Messages of a watch until the first heartbeat after its replay, with the events they carried. */
async function untilHeartbeat<E>(
  stream: AsyncIterable<{ events: E[]; heartbeat?: unknown }>,
): Promise<{ eventMessages: number; events: E[] }> {
  const events: E[] = [];
  let eventMessages = 0;
  for await (const message of stream) {
    if (message.heartbeat) break;
    if (message.events.length > 0) eventMessages++;
    events.push(...message.events);
  }
  return { eventMessages, events };
}

/** Expects seqs to be consecutive (exactly once, in order). */
function expectConsecutive(seqs: bigint[]): void {
  const first = seqs[0] ?? 0n;
  expect(seqs).toEqual(seqs.map((_, i) => first + BigInt(i)));
}

describe.each(STORE_FACTORIES)("responses fit the message limit ($name store)", (storeFactory) => {
  let harness: Harness;
  let cleanup: () => Promise<void>;
  let worker: WorkerRef;
  let runIds: string[];
  let workerCursor: string;
  let runtimeCursor: string;

  beforeAll(async () => {
    const created = await storeFactory.create();
    cleanup = created.cleanup;
    harness = await startHarness({
      store: created.store,
      executionBackend: new ScriptedBackend(replyWith(ANSWER)),
      heartbeatIntervalMs: 300,
    });
    const clients = harness.connect("grpc");
    const runtimeId = harness.runtime.runtimeId;
    // Cursors from before the inputs: a watcher resuming from them must replay everything.
    const abort = new AbortController();
    for await (const message of clients.observation.watchRuntime({ runtimeId }, { signal: abort.signal })) {
      runtimeCursor = message.snapshot?.cursor ?? "";
      break;
    }
    const created0 = await clients.catalog.createWorker({ runtimeId });
    worker = created0.worker?.ref as WorkerRef;
    for await (const message of clients.observation.watchWorker({ worker }, { signal: abort.signal })) {
      workerCursor = message.snapshot?.cursor ?? "";
      break;
    }
    abort.abort();
    runIds = [];
    for (let i = 0; i < INPUTS; i++) {
      const { run } = await clients.interaction.sendInput({ worker, input: { text: INPUT_TEXT(i) } });
      const runId = run?.runId ?? "";
      runIds.push(runId);
      await eventually(async () => (await clients.interaction.getRun({ worker, runId })).run?.status === RunStatus.COMPLETED);
    }
  }, 120_000);
  afterAll(async () => {
    await harness.close();
    await cleanup();
  });

  describe.each(PROTOCOLS)("over %s", (protocol) => {
    let clients: Clients;
    beforeAll(() => {
      clients = harness.connect(protocol);
    });

    it("ReadTranscript with the default limit pages by bytes, forward and from the tail", async () => {
      const forward: TranscriptEntry[] = [];
      let pages = 0;
      for (let afterSeq = 0n, more = true; more; pages++) {
        const page = await clients.observation.readTranscript({ worker, position: { case: "afterSeq", value: afterSeq } });
        expect(page.entries.length).toBeGreaterThan(0);
        forward.push(...page.entries);
        afterSeq = page.entries[page.entries.length - 1]?.seq ?? afterSeq;
        more = page.hasMore;
      }
      expect(pages).toBeGreaterThan(1);
      expect(forward.length).toBe(2 * INPUTS);
      expectConsecutive(forward.map((entry) => entry.seq));
      expect(forward[0]?.seq).toBe(1n);
      const users = forward.filter((entry) => entry.content.case === "userMessage");
      expect(users.map((entry) => (entry.content.case === "userMessage" ? entry.content.value.text : ""))).toEqual(
        Array.from({ length: INPUTS }, (_, i) => INPUT_TEXT(i)),
      );

      const backward: TranscriptEntry[] = [];
      for (let page = await clients.observation.readTranscript({ worker }); ; ) {
        backward.unshift(...page.entries);
        if (!page.hasMore) break;
        const beforeSeq = page.entries[0]?.seq ?? 1n;
        page = await clients.observation.readTranscript({ worker, position: { case: "beforeSeq", value: beforeSeq } });
      }
      expect(backward.map((entry) => entry.seq)).toEqual(forward.map((entry) => entry.seq));
    });

    it("ListRuns with the default page size pages by bytes", async () => {
      const listed: string[] = [];
      let pages = 0;
      for (let pageToken = "", first = true; first || pageToken !== ""; first = false, pages++) {
        const page = await clients.interaction.listRuns({ worker, pageToken });
        expect(page.runs.length).toBeGreaterThan(0);
        listed.push(...page.runs.map((run) => run.runId));
        pageToken = page.nextPageToken;
      }
      expect(pages).toBeGreaterThan(1);
      expect(listed).toEqual([...runIds].reverse());
    });

    it("WatchWorker resumed from an early cursor replays everything in several messages", async () => {
      const abort = new AbortController();
      try {
        const stream = clients.observation.watchWorker({ worker, afterCursor: workerCursor }, { signal: abort.signal });
        const { eventMessages, events } = await untilHeartbeat<WorkerEvent>(stream);
        expect(eventMessages).toBeGreaterThan(1);
        expectConsecutive(events.map((event) => event.seq));
        const completed = events.flatMap((event) =>
          event.kind.case === "runChanged" && event.kind.value.status === RunStatus.COMPLETED ? [event.kind.value.runId] : [],
        );
        expect(completed).toEqual(runIds);
        const appended = events.filter((event) => event.kind.case === "transcriptAppended");
        expect(appended.length).toBe(2 * INPUTS);
      } finally {
        abort.abort();
      }
    });

    it("WatchRuntime resumed from an early cursor replays everything in several messages", async () => {
      const abort = new AbortController();
      try {
        const runtimeId = harness.runtime.runtimeId;
        const stream = clients.observation.watchRuntime({ runtimeId, afterCursor: runtimeCursor }, { signal: abort.signal });
        const { eventMessages, events } = await untilHeartbeat<RuntimeEvent>(stream);
        expect(eventMessages).toBeGreaterThan(1);
        expectConsecutive(events.map((event) => event.seq));
        expect(events[0]?.kind.case).toMatch(/^worker(Created|Updated)$/);
        const completed = events.flatMap((event) =>
          event.kind.case === "runChanged" && event.kind.value.status === RunStatus.COMPLETED ? [event.kind.value.runId] : [],
        );
        expect(completed).toEqual(runIds);
      } finally {
        abort.abort();
      }
    });
  });
});

describe("responses fit a small message limit", () => {
  const maxMessageBytes = 64 * 1024;
  let harness: Harness;
  let backend: ScriptedBackend;

  beforeAll(async () => {
    backend = new ScriptedBackend();
    harness = await startHarness({ executionBackend: backend, limits: { maxMessageBytes } });
  });
  afterAll(async () => {
    await harness.close();
  });

  /** Commits `count` answers of `bytes` each, back to back, so they are delivered together. */
  const commitMany =
    (count: number, bytes: number): RunScript =>
    async (_request, sink) => {
      const commits = Array.from({ length: count }, (_, i) =>
        sink.commit({
          case: "assistantMessage",
          value: { $typeName: "worker_runtime.v1.AssistantMessage", text: `${i}`.padEnd(bytes, "a") },
        }),
      );
      await Promise.all(commits);
      return { kind: "completed", stopReason: StopReason.END_TURN };
    };

  it.each(PROTOCOLS)("splits StreamInput and live WatchWorker batches over %s", async (protocol) => {
    const clients = harness.connect(protocol);
    const { worker } = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
    const abort = new AbortController();
    try {
      const watch = clients.observation.watchWorker({ worker: worker?.ref }, { signal: abort.signal })[Symbol.asyncIterator]();
      await watch.next();
      backend.enqueue(commitMany(8, 30_000));
      const answers: string[] = [];
      for await (const message of clients.interaction.streamInput({ worker: worker?.ref, input: { text: "many" } })) {
        for (const event of message.events) {
          if (event.kind.case === "transcriptAppended" && event.kind.value.content.case === "assistantMessage") {
            answers.push(event.kind.value.content.value.text.slice(0, 1));
          }
        }
      }
      expect(answers).toEqual(["0", "1", "2", "3", "4", "5", "6", "7"]);
      const watched: string[] = [];
      while (watched.length < 8) {
        const { value } = await watch.next();
        for (const event of value?.events ?? []) {
          if (event.kind.case === "transcriptAppended" && event.kind.value.content.case === "assistantMessage") {
            watched.push(event.kind.value.content.value.text.slice(0, 1));
          }
        }
      }
      expect(watched).toEqual(answers);
    } finally {
      abort.abort();
    }
  });

  it.each(PROTOCOLS)("pages ListWorkers by bytes over %s", async (protocol) => {
    const clients = harness.connect(protocol);
    const runtimeId = harness.runtime.runtimeId;
    const intent = "i".repeat(4096);
    const created = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const { worker } = await clients.catalog.createWorker({ runtimeId, intent, labels: { batch: protocol } });
      created.add(worker?.ref?.workerId ?? "");
    }
    const listed: string[] = [];
    let pages = 0;
    for (let pageToken = "", first = true; first || pageToken !== ""; first = false, pages++) {
      const page = await clients.catalog.listWorkers({ runtimeId, pageToken, labelSelector: { batch: protocol } });
      listed.push(...page.workers.map((worker) => worker.ref?.workerId ?? ""));
      pageToken = page.nextPageToken;
    }
    expect(pages).toBeGreaterThan(1);
    expect(listed.length).toBe(created.size);
    expect(new Set(listed)).toEqual(created);
  });
});
