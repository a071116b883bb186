import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../../support/harness.js";
import { parseLogLines } from "../../support/log-lines.js";
import { reply } from "../../support/openai-chunks.js";
import { runClient, serveRuntime, type ServedRuntime } from "./client-support.js";

/**
 * The calls `send` makes, as the runtime's own RPC log (debug level) counts
 * them. A send of ordinary text asks nothing it does not need: the
 * runtime's max_input_bytes only matters for text longer than any runtime
 * can fail to receive whole, and when the client had to find the runtime
 * (no --runtime) the summary it read says it already. Every send used to
 * ask GetRuntime for it first. Text over the limit is still refused before
 * it is sent, --runtime or not.
 */

const GET_RUNTIME = "worker_runtime.v1.RuntimeManagement/GetRuntime";
const STREAM_INPUT = "worker_runtime.v1.WorkerInteraction/StreamInput";
/** The runtime's default max_input_bytes. */
const LIMIT = 262_144;

let rt: ServedRuntime;
let worker: string;

beforeAll(async () => {
  rt = await serveRuntime({ runtimeId: "rt-calls", env: { WORKER_RUNTIME_LOG_LEVEL: "debug" } });
  worker = (await runClient(["workers", "create", "--profile", "companion"], { server: rt.url })).stdout.trim();
});

afterAll(async () => {
  await rt?.close();
});

/** How many calls of `method` the runtime has logged as ended (complete lines only: the last may be half written). */
function logged(method: string): number {
  const stderr = rt.process.stderr();
  return parseLogLines(stderr.slice(0, stderr.lastIndexOf("\n") + 1)).filter(
    (line) => line["rpc_method"] === method && (line.message === "rpc completed" || line.message === "rpc failed"),
  ).length;
}

/** Runs `send` and returns the GetRuntime calls the runtime saw for it (its StreamInput logged first, so none is still to come). */
async function getRuntimeCallsOf(args: string[], input?: string): Promise<number> {
  const [getRuntimeBefore, streamInputBefore] = [logged(GET_RUNTIME), logged(STREAM_INPUT)];
  rt.fake.enqueue(reply({ text: "ok" }));
  const result = await runClient(["send", worker, ...args], { server: rt.url, ...(input !== undefined ? { input } : {}) });
  expect(result, args.join(" ")).toMatchObject({ code: 0, stdout: "ok\n" });
  await eventually(() => logged(STREAM_INPUT) === streamInputBefore + 1, 30_000, "the StreamInput in the runtime's log");
  return logged(GET_RUNTIME) - getRuntimeBefore;
}

describe("send's calls", () => {
  it("ordinary text: no GetRuntime with --runtime, only the one that finds the runtime without it", async () => {
    expect(await getRuntimeCallsOf(["hello", "--runtime", "rt-calls"])).toBe(0);
    expect(await getRuntimeCallsOf(["--runtime", "rt-calls"], "hello from stdin\n")).toBe(0);
    // Finding the only runtime reads its summary, limits included.
    expect(await getRuntimeCallsOf(["hello"])).toBe(1);
    expect(await getRuntimeCallsOf([], "x".repeat(LIMIT))).toBe(1);
  });

  it("text over the limit is still refused before it is sent, with --runtime too", async () => {
    const before = rt.fake.requests.length;
    for (const args of [["--runtime", "rt-calls"], []]) {
      const result = await runClient(["send", worker, ...args], { server: rt.url, input: "a".repeat(6 * 1024 * 1024) });
      expect(result, args.join(" ")).toMatchObject({
        code: 8,
        stdout: "",
        stderr: `worker-runtime: the text is more than ${LIMIT} bytes; at most ${LIMIT} allowed (the runtime's max_input_bytes) (reason: LIMIT_EXCEEDED)\n`,
      });
    }
    expect(rt.fake.requests.length).toBe(before);
  });
});
