import { create, toBinary } from "@bufbuild/protobuf";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { GetRuntimeRequestSchema } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { SendInputRequestSchema } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { type Harness, startHarness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * The most the run's first step holds the runtime's event loop waiting for
 * the client to have the trailers: far more than a loaded machine's
 * scheduling delays, since only a failing run waits it out.
 */
const HOLD_LIMIT_MS = 20_000;

/**
 * A raw HTTP/2 client in its own process (so the runtime's blocked loop
 * cannot hold it): connects, sends one gRPC request, creates the file
 * `marker` as soon as the response's trailers arrive, and prints the status.
 */
const CLIENT = `
const http2 = require("node:http2");
const { writeFileSync } = require("node:fs");
const [url, path, hex, marker] = process.argv.slice(1);
const session = http2.connect(url);
session.on("connect", () => {
  const body = Buffer.from(hex, "hex");
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
  let status = "";
  stream.on("trailers", (trailers) => {
    status = String(trailers["grpc-status"]);
    writeFileSync(marker, status);
  });
  stream.on("close", () => {
    process.stdout.write(JSON.stringify({ status }));
    session.close();
  });
  stream.resume();
  stream.end(frame);
});
`;

/**
 * The same client sending a few calls one after another, printing for each
 * how many ms after the response's headers its trailers arrived.
 */
const TRAILER_GAP_CLIENT = `
const http2 = require("node:http2");
const [url, path, hex, count] = process.argv.slice(1);
const session = http2.connect(url);
const body = Buffer.from(hex, "hex");
const frame = Buffer.alloc(5 + body.length);
frame.writeUInt32BE(body.length, 1);
body.copy(frame, 5);
const gaps = [];
const one = () => {
  const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
  let headersAt = 0;
  let gap = { ms: -1, status: "no trailers" };
  stream.on("response", () => { headersAt = performance.now(); });
  stream.on("trailers", (trailers) => { gap = { ms: performance.now() - headersAt, status: String(trailers["grpc-status"]) }; });
  stream.on("close", () => {
    gaps.push(gap);
    if (gaps.length < Number(count)) return one();
    process.stdout.write(JSON.stringify(gaps));
    session.close();
  });
  stream.resume();
  stream.end(frame);
};
session.on("connect", one);
`;

function runClient<T>(script: string, args: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script, ...args], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
    child.on("error", reject);
    child.on("exit", (code) => {
      try {
        resolve(JSON.parse(out) as T);
      } catch {
        reject(new Error(`the client exited with ${code} and printed ${JSON.stringify(out)}`));
      }
    });
  });
}

function sendFromAnotherProcess(baseUrl: string, path: string, body: Uint8Array, marker: string): Promise<{ status: string }> {
  return runClient(CLIENT, [baseUrl, path, Buffer.from(body).toString("hex"), marker]);
}

describe("SendInput's response", () => {
  let harness: Harness;
  const backend = new ScriptedBackend();

  beforeAll(async () => {
    harness = await startHarness({ executionBackend: backend });
  });
  afterAll(async () => {
    await harness.close();
  });

  it("is sent whole before the run's execution starts, even when its first step holds the event loop", async () => {
    const marker = join(await mkdtemp(join(tmpdir(), "send-input-response-")), "trailers");
    let started = false;
    let trailersArrivedWhileHeld = false;
    backend.enqueue(async () => {
      started = true;
      // The run's first step holds the loop (CPU-bound work, as building a provider request at worst) until
      // the client process says it has the trailers. Were they not written yet, they could not be now:
      // writing them needs this loop. So the marker shows up during the hold only if they went out first;
      // the hold's limit only ends a failing run (the assertion below), it measures nothing.
      const until = performance.now() + HOLD_LIMIT_MS;
      while (!trailersArrivedWhileHeld && performance.now() < until) trailersArrivedWhileHeld = existsSync(marker);
      return { kind: "completed", stopReason: StopReason.END_TURN };
    });
    const clients = harness.connect("grpc");
    const { worker } = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
    const request = create(SendInputRequestSchema, { worker: worker?.ref, input: { text: "hello" } });
    const answer = await sendFromAnotherProcess(
      harness.baseUrl,
      "/worker_runtime.v1.WorkerInteraction/SendInput",
      toBinary(SendInputRequestSchema, request),
      marker,
    );
    expect(answer.status).toBe("0");
    expect(started).toBe(true);
    expect(trailersArrivedWhileHeld).toBe(true);
  }, 60_000);

  it("has its trailers sent with its message, not a turn of the event loop later", async () => {
    // Every turn of the runtime's loop starts with 500 ms of timer work (as a busy runtime's turns are long;
    // long enough that a loaded machine's scheduling cannot make up the difference: at 150 ms, a CI
    // machine at load 12 on 2 cores once delayed a flushed trailer by 171 ms).
    const turnMs = 500;
    const busyTurns = setInterval(() => {
      const until = performance.now() + turnMs;
      while (performance.now() < until) {
        // busy
      }
    }, 0);
    try {
      const request = create(GetRuntimeRequestSchema, { runtimeId: harness.runtime.runtimeId });
      const gaps = await runClient<{ ms: number; status: string }[]>(TRAILER_GAP_CLIENT, [
        harness.baseUrl,
        "/worker_runtime.v1.RuntimeManagement/GetRuntime",
        Buffer.from(toBinary(GetRuntimeRequestSchema, request)).toString("hex"),
        "3",
      ]);
      expect(gaps.map((gap) => gap.status)).toEqual(["0", "0", "0"]);
      // Node sends trailers from a setImmediate, flushed at the next turn's check phase unless the server flushes them.
      for (const gap of gaps) expect(gap.ms).toBeLessThan(turnMs / 2);
    } finally {
      clearInterval(busyTurns);
    }
  });
});
