/**
 * Child process of crash.test.ts and crash-retention.test.ts: a real
 * runtime server (core + fs store + connect server) with a scripted backend
 * whose runs stream for a while, so that a SIGKILL lands in the middle of
 * runs and group commits. Optional arguments set the store's segment size
 * and event retention (defaults: 32 KiB, nothing pruned). Prints
 * `ready <h2 address> <runtime id>` once serving.
 */
import { StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { startRuntimeServer } from "../../src/server/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { ScriptedBackend, type RunScript } from "../support/scripted-backend.js";

const [dataDir, segmentBytes = "32768", eventRetention = "1000000"] = process.argv.slice(2);
if (!dataDir) throw new Error("usage: crash-child.ts DATA_DIR [SEGMENT_BYTES EVENT_RETENTION]");

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Streams a few deltas with pauses, commits two entries and completes. */
const streamingReply: RunScript = async (request, sink, signal) => {
  const blockId = `${request.run.runId}-b0`;
  sink.turn();
  for (let i = 0; i < 4 && !signal.aborted; i++) {
    sink.textDelta(blockId, `chunk ${i} `);
    await pause(5);
  }
  await sink.commit({ case: "reasoning", value: { $typeName: "worker_runtime.v1.Reasoning", text: "thinking" } }, `${blockId}-r`);
  await sink.commit(
    { case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text: `reply to ${request.run.runId}` } },
    blockId,
  );
  sink.addUsage({ inputTokens: 3n, outputTokens: 2n });
  return { kind: "completed", stopReason: StopReason.END_TURN };
};

const runtime = await createRuntime({
  store: createFileStore({ dataDir, segmentBytes: Number(segmentBytes), eventRetention: Number(eventRetention) }),
  executionBackend: new ScriptedBackend(streamingReply),
  logger: silentLogger,
});
const server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger: silentLogger });
process.stdout.write(`ready ${server.h2Address} ${runtime.runtimeId}\n`);
