import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { InFlightBlockKind } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, RunStatus, StopReason, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { type WatchWorkerResponse, WatchWorkerResponseSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { byteBounds, DEFAULT_LIMITS, type Limits, resolveLimits, runPayloadRoom } from "../../src/runtime/limits.js";
import { createRuntime } from "../../src/runtime/index.js";
import { expectReason } from "../support/errors.js";
import { eventually, startHarness, type Clients, type Harness } from "../support/harness.js";
import { holdOpen, ScriptedBackend, type RunScript } from "../support/scripted-backend.js";

/** A small message limit keeps the bounds small, so the tests move little data. */
const MAX_MESSAGE_BYTES = 256 * 1024;
const BOUNDS = byteBounds({ maxMessageBytes: MAX_MESSAGE_BYTES });

const commitAnswer =
  (text: string): RunScript =>
  async (_request, sink) => {
    await sink.commit({ case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text } });
    return { kind: "completed", stopReason: StopReason.END_TURN };
  };

const streamText =
  (text: string): RunScript =>
  async (request, sink) => {
    sink.textDelta(`${request.run.runId}-b0`, text);
    return { kind: "completed", stopReason: StopReason.END_TURN };
  };

const askApproval =
  (argumentsJson: string): RunScript =>
  async (_request, sink, signal) => {
    await sink.requestApproval({ toolCallId: "call-1", toolName: "write_file", argumentsJson }, signal);
    return { kind: "completed", stopReason: StopReason.END_TURN };
  };

/** A runtime with these limits and a scripted execution backend, its gRPC clients, and one worker of it. */
async function startWithWorker(
  limits: Partial<Limits>,
): Promise<{ harness: Harness; clients: Clients; backend: ScriptedBackend; worker: WorkerRef }> {
  const backend = new ScriptedBackend();
  const harness = await startHarness({ executionBackend: backend, limits });
  const clients = harness.connect("grpc");
  const created = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
  return { harness, clients, backend, worker: created.worker?.ref as WorkerRef };
}

describe("what a run may produce is bounded so it can be delivered", () => {
  let harness: Harness;
  let clients: Clients;
  let backend: ScriptedBackend;
  let worker: WorkerRef;

  beforeAll(async () => {
    ({ harness, clients, backend, worker } = await startWithWorker({ maxMessageBytes: MAX_MESSAGE_BYTES }));
  });
  afterAll(async () => {
    await harness.close();
  });

  async function ended(text: string): Promise<Run> {
    const { run } = await clients.interaction.sendInput({ worker, input: { text } });
    const runId = run?.runId ?? "";
    let last: Run | undefined;
    await eventually(async () => {
      last = (await clients.interaction.getRun({ worker, runId })).run;
      return last?.status === RunStatus.COMPLETED || last?.status === RunStatus.FAILED;
    });
    return last as Run;
  }

  it("fails a run whose entry would not fit one event, and commits nothing of it", async () => {
    backend.enqueue(commitAnswer("z".repeat(BOUNDS.maxEntryBytes)));
    const run = await ended("too long an answer");
    expect(run.status).toBe(RunStatus.FAILED);
    expect(run.error?.reason).toBe(ErrorReason.LIMIT_EXCEEDED);
    const { entries } = await clients.observation.readTranscript({ worker });
    const ofRun = entries.filter((entry) => entry.runId === run.runId).map((entry) => entry.content.case);
    expect(ofRun).toEqual(["userMessage", "notice"]);
  });

  it("commits an answer just within the entry bound", async () => {
    backend.enqueue(commitAnswer("z".repeat(BOUNDS.maxEntryBytes - 1024)));
    const run = await ended("a long answer");
    expect(run.status).toBe(RunStatus.COMPLETED);
    const { entries } = await clients.observation.readTranscript({ worker, limit: 1 });
    expect(entries[0]?.content.case).toBe("assistantMessage");
  });

  it("fails a run that streams more than the in-flight bound, and a watcher can still attach", async () => {
    backend.enqueue(streamText("s".repeat(BOUNDS.maxInFlightBytes + 1)));
    const run = await ended("too much streamed");
    expect(run.error?.reason).toBe(ErrorReason.LIMIT_EXCEEDED);
    const abort = new AbortController();
    for await (const message of clients.observation.watchWorker({ worker }, { signal: abort.signal })) {
      expect(message.snapshot?.inFlight.filter((block) => block.kind === InFlightBlockKind.TEXT)).toEqual([]);
      break;
    }
    abort.abort();
  });

  it("fails a run asking approval for arguments past the in-flight bound", async () => {
    backend.enqueue(askApproval(`"${"a".repeat(BOUNDS.maxInFlightBytes)}"`));
    const run = await ended("too big a tool call");
    expect(run.error?.reason).toBe(ErrorReason.LIMIT_EXCEEDED);
  });

  it("refuses queued input past the queued-bytes bound with QUEUE_FULL", async () => {
    const held = holdOpen("working");
    backend.enqueue(held.script);
    const { run: active } = await clients.interaction.sendInput({ worker, input: { text: "hold" } });
    await held.started;
    const third = Math.floor(BOUNDS.maxQueuedInputBytes / 3);
    const queued: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { run } = await clients.interaction.sendInput({ worker, input: { text: "q".repeat(third) }, busyPolicy: BusyPolicy.ENQUEUE });
      queued.push(run?.runId ?? "");
    }
    const detail = await expectReason(
      () => clients.interaction.sendInput({ worker, input: { text: "q".repeat(third) }, busyPolicy: BusyPolicy.ENQUEUE }),
      Code.ResourceExhausted,
      ErrorReason.QUEUE_FULL,
    );
    expect(detail.metadata.max_queued_input_bytes).toBe(String(BOUNDS.maxQueuedInputBytes));
    held.release();
    const last = queued[queued.length - 1] ?? "";
    await eventually(async () => (await clients.interaction.getRun({ worker, runId: last })).run?.status === RunStatus.COMPLETED);
    expect((await clients.interaction.getRun({ worker, runId: active?.runId ?? "" })).run?.status).toBe(RunStatus.COMPLETED);
  });
});

describe("limits", () => {
  it("lowers an unconfigured input limit to fit a small message limit, and refuses a configured one that cannot fit", async () => {
    const small = resolveLimits({ maxMessageBytes: 64 * 1024 });
    expect(small.maxInputBytes).toBeLessThan(64 * 1024);
    expect(resolveLimits({}).maxInputBytes).toBe(DEFAULT_LIMITS.maxInputBytes);
    expect(() => resolveLimits({ maxMessageBytes: 64 * 1024, maxInputBytes: 64 * 1024 })).toThrow(/maxInputBytes/);
  });

  it("refuses a tool-call id limit below the 64 characters of the provider ids a run keeps, which ResolveApproval must accept", async () => {
    // The engine keeps a provider's tool-call id of up to 64 characters (chunk-accumulator.ts): under a lower limit a run
    // could wait for an approval of a call whose id ResolveApproval refuses.
    expect(() => resolveLimits({ maxToolCallIdLength: 63 })).toThrow(/maxToolCallIdLength 63 .*64/);
    await expect(createRuntime({ limits: { maxToolCallIdLength: 1 } })).rejects.toThrow(/maxToolCallIdLength/);
    expect(resolveLimits({ maxToolCallIdLength: 64 }).maxToolCallIdLength).toBe(64);
  });

  it("refuses a watcher-backlog or event-retention byte bound below one message or above a uint32, and raises an unconfigured one to the message limit", async () => {
    for (const name of ["maxSubscriberBacklogBytes", "eventRetentionBytes"] as const) {
      expect(() => resolveLimits({ maxMessageBytes: 1024 * 1024, [name]: 1024 * 1024 - 1 })).toThrow(
        new RegExp(`${name} ${1024 * 1024 - 1}`),
      );
      expect(() => resolveLimits({ [name]: 2 ** 32 })).toThrow(new RegExp(name));
      expect(() => resolveLimits({ [name]: Number.NaN })).toThrow(new RegExp(name));
      expect(resolveLimits({ maxMessageBytes: 1024 * 1024, [name]: 1024 * 1024 })[name]).toBe(1024 * 1024);
      expect(resolveLimits({ maxMessageBytes: 128 * 1024 * 1024 })[name]).toBe(128 * 1024 * 1024);
      expect(resolveLimits({})[name]).toBe(64 * 1024 * 1024);
      await expect(createRuntime({ limits: { [name]: 1 } })).rejects.toThrow(new RegExp(name));
    }
  });

  it("keeps the worst-case WatchWorker snapshot of the defaults within the message limit", () => {
    const limits = DEFAULT_LIMITS;
    const bounds = byteBounds(limits);
    const ref = { runtimeId: "r".repeat(128), workerId: "w".repeat(128) };
    const label = (i: number): [string, string] => [`k${i}`.padEnd(63, "k"), "v".repeat(limits.maxLabelValueBytes)];
    const run = (text: string, argumentsJson = ""): Run =>
      create(RunSchema, {
        runId: "r".repeat(64),
        worker: ref,
        input: { text },
        status: RunStatus.AWAITING_APPROVAL,
        error: { reason: ErrorReason.INTERNAL, message: "e".repeat(2048) },
        requestId: "q".repeat(128),
        turns: 100,
        usage: { inputTokens: 1n << 40n, outputTokens: 1n << 40n, modelRequests: 1000n },
        createdAt: { seconds: 1n << 40n, nanos: 999_999_999 },
        startedAt: { seconds: 1n << 40n, nanos: 999_999_999 },
        ...(argumentsJson ? { pendingApproval: { toolCallId: "c".repeat(256), toolName: "t".repeat(64), argumentsJson } } : {}),
      });
    // Up to maxQueueDepth ENQUEUE'd inputs and as many interrupting ones wait, all within the queued-bytes bound.
    const queuedRuns = 2 * limits.maxQueueDepth;
    const queuedText = "q".repeat(Math.floor(bounds.maxQueuedInputBytes / queuedRuns));
    const inFlightHalf = Math.floor(bounds.maxInFlightBytes / 2);
    const response = create(WatchWorkerResponseSchema, {
      snapshot: {
        worker: {
          ref,
          displayName: "d".repeat(limits.maxDisplayNameBytes),
          intent: "i".repeat(limits.maxIntentBytes),
          labels: Object.fromEntries(Array.from({ length: limits.maxLabels }, (_, i) => label(i))),
          capabilities: ["fs.read", "fs.write", "shell.exec"],
          workspace: { root: "r".repeat(64), path: "p".repeat(limits.maxWorkspacePathBytes) },
          mounts: Array.from({ length: limits.maxMounts }, (_, i) => ({
            root: "r".repeat(64),
            path: "p".repeat(limits.maxWorkspacePathBytes),
            name: `m${i}`.padEnd(63, "m"),
            writable: true,
          })),
          failureMessage: "f".repeat(1024),
        },
        activeRun: run("a".repeat(limits.maxInputBytes), "x".repeat(inFlightHalf)),
        queuedRuns: Array.from({ length: queuedRuns }, () => run(queuedText)),
        inFlight: [{ runId: "r".repeat(64), blockId: "b".repeat(64), kind: InFlightBlockKind.TEXT, text: "t".repeat(inFlightHalf) }],
        cursor: "c".repeat(256),
      },
    });
    expect(toBinary(WatchWorkerResponseSchema, response).byteLength).toBeLessThanOrEqual(limits.maxMessageBytes);
  });
});

describe("a snapshot a configuration lets outgrow the message limit", () => {
  it.each(["grpc", "connect"] as const)("is refused with LIMIT_EXCEEDED and its limit over %s", async (protocol) => {
    const backend = new ScriptedBackend();
    const harness = await startHarness({ executionBackend: backend, limits: { maxMessageBytes: 64 * 1024, maxQueueDepth: 400 } });
    try {
      const clients = harness.connect(protocol);
      const { worker } = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
      const held = holdOpen("working");
      backend.enqueue(held.script);
      await clients.interaction.sendInput({ worker: worker?.ref, input: { text: "hold" } });
      await held.started;
      for (let i = 0; i < 400; i++) {
        const requestId = `${i}`.padEnd(128, "r");
        await clients.interaction.sendInput({ worker: worker?.ref, input: { text: "q" }, busyPolicy: BusyPolicy.ENQUEUE, requestId });
      }
      const detail = await expectReason(
        async () => {
          for await (const message of clients.observation.watchWorker({ worker: worker?.ref })) return message;
          return undefined;
        },
        Code.ResourceExhausted,
        ErrorReason.LIMIT_EXCEEDED,
      );
      expect(detail.metadata.limit).toBe(String(64 * 1024));
      expect(harness.runtime.stats().subscriptions).toBe(0);
      held.release();
    } finally {
      await harness.close();
    }
  });
});

describe("GetRuntime.limits", () => {
  it("shows the derived byte bounds", async () => {
    const harness = await startHarness({ limits: { maxMessageBytes: MAX_MESSAGE_BYTES } });
    try {
      const { runtime } = await harness.connect("grpc").management.getRuntime({});
      expect(runtime?.limits?.maxMessageBytes).toBe(MAX_MESSAGE_BYTES);
      expect(runtime?.limits?.maxEntryBytes).toBe(BOUNDS.maxEntryBytes);
      expect(runtime?.limits?.maxInFlightBytes).toBe(BOUNDS.maxInFlightBytes);
      expect(runtime?.limits?.maxQueuedInputBytes).toBe(BOUNDS.maxQueuedInputBytes);
      // The default input limit was lowered to fit this message limit.
      expect(runtime?.limits?.maxInputBytes).toBe(runPayloadRoom({ maxMessageBytes: MAX_MESSAGE_BYTES, maxApprovalReasonBytes: 1024 }));
    } finally {
      await harness.close();
    }
  });

  it("shows the backlog and retention bounds, counts and bytes", async () => {
    const limits = { maxSubscriberBacklog: 1234, maxSubscriberBacklogBytes: 5 << 20, eventRetention: 777, eventRetentionBytes: 6 << 20 };
    const harness = await startHarness({ limits });
    try {
      const { runtime } = await harness.connect("connect").management.getRuntime({});
      expect(runtime?.limits).toMatchObject(limits);
    } finally {
      await harness.close();
    }
  });
});

/**
 * Every event the runtime sends must fit one message, a run_changed too: a
 * run carries its input, a pending tool call's arguments and its last
 * decisions (resolved_approvals). With `maxInputBytes` configured at its
 * largest, a tool call whose arguments take most of the in-flight bound
 * used to make a run larger than a message: its run_changed could not be
 * sent, every watcher ended with LIMIT_EXCEEDED, and so did every later
 * replay through that stored event. Now the run is refused as it asks
 * (the run fails with LIMIT_EXCEEDED) and nothing undeliverable is made.
 */
describe("a run at its largest", () => {
  const limits = { maxMessageBytes: MAX_MESSAGE_BYTES, maxApprovalReasonBytes: DEFAULT_LIMITS.maxApprovalReasonBytes };
  const inputRoom = runPayloadRoom(limits);
  let harness: Harness;
  let clients: Clients;
  let backend: ScriptedBackend;
  let worker: WorkerRef;

  beforeAll(async () => {
    ({ harness, clients, backend, worker } = await startWithWorker({ ...limits, maxInputBytes: inputRoom }));
  });
  afterAll(async () => {
    await harness.close();
  });

  /** Reads `watch` until `runId` ends; returns its last run_changed. A stream error is thrown. */
  async function untilEnded(watch: AsyncIterator<WatchWorkerResponse>, runId: string): Promise<Run> {
    for (;;) {
      const next = await watch.next();
      if (next.done) throw new Error("the watch ended before the run");
      for (const event of next.value.events) {
        const run = event.kind.case === "runChanged" ? event.kind.value : undefined;
        if (run?.runId === runId && [RunStatus.COMPLETED, RunStatus.FAILED].includes(run.status)) return run;
      }
    }
  }

  it("fails a run whose input and pending arguments together would pass a message, and its watcher reads on", async () => {
    backend.enqueue(askApproval(`"${"a".repeat(BOUNDS.maxInFlightBytes - 16)}"`));
    const abort = new AbortController();
    const watch = clients.observation.watchWorker({ worker }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await watch.next()).value?.snapshot).toBeDefined();
    const { run } = await clients.interaction.sendInput({ worker, input: { text: "x".repeat(inputRoom - 1024) } });
    const ended = await untilEnded(watch, run?.runId ?? "");
    expect([ended.status, ended.error?.reason]).toEqual([RunStatus.FAILED, ErrorReason.LIMIT_EXCEEDED]);
    expect(ended.error?.message).toMatch(/with its input \(\d+ bytes\) a run holds at most \d+/);
    abort.abort();
  });

  it("delivers a run at its largest: input and arguments filling their room, its last decisions at theirs", async () => {
    const asks = 17;
    backend.enqueue(async (_request, sink, signal) => {
      for (let i = 0; i < asks; i++) {
        await sink.requestApproval({ toolCallId: `call-${i}`, toolName: "write_file", argumentsJson: "{}" }, signal);
      }
      return { kind: "completed", stopReason: StopReason.END_TURN };
    });
    const abort = new AbortController();
    const watch = clients.observation.watchWorker({ worker }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await watch.next()).value?.snapshot).toBeDefined();
    // The input at its largest, less the two bytes of each call's arguments: the run is then at its largest.
    const { run } = await clients.interaction.sendInput({ worker, input: { text: "é".repeat((inputRoom - 2) / 2) } });
    const runId = run?.runId ?? "";
    for (let i = 0; i < asks; i++) {
      await eventually(async () => (await clients.interaction.getRun({ worker, runId })).run?.pendingApproval?.toolCallId === `call-${i}`);
      await clients.interaction.resolveApproval({
        worker,
        runId,
        toolCallId: `call-${i}`,
        decision: ApprovalDecision.APPROVE,
        reason: "r".repeat(DEFAULT_LIMITS.maxApprovalReasonBytes),
        requestId: `${i}`.padStart(128, "q"),
      });
    }
    const ended = await untilEnded(watch, runId);
    expect(ended.status).toBe(RunStatus.COMPLETED);
    expect(ended.resolvedApprovals).toHaveLength(16);
    abort.abort();
  });
});
