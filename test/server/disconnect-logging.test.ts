import http from "node:http";
import http2 from "node:http2";
import { describe, expect, it } from "vitest";
import { createRuntime, type Logger } from "../../src/runtime/index.js";
import { startRuntimeServer } from "../../src/server/index.js";
import { eventually } from "../support/harness.js";
import { holdOpen, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A client that goes away mid-stream is routine: it must not be logged as an
 * error (operators page on those), over HTTP/2 or HTTP/1.1.
 */

interface LogRecord {
  level: "info" | "warn" | "error";
  message: string;
  fields: Record<string, unknown> | undefined;
}

function recordingLogger(records: LogRecord[]): Logger {
  const at = (level: LogRecord["level"]) => (message: string, fields?: Record<string, unknown>) => records.push({ level, message, fields });
  return { info: at("info"), warn: at("warn"), error: at("error") };
}

/** A Connect server-streaming request body (one enveloped JSON message). */
function streamBody(message: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(message));
  const header = Buffer.alloc(5);
  header.writeUInt32BE(json.length, 1);
  return Buffer.concat([header, json]);
}

describe("client disconnects", () => {
  it("are not logged as errors", async () => {
    const records: LogRecord[] = [];
    const logger = recordingLogger(records);
    const held = holdOpen("y".repeat(1000));
    const runtime = await createRuntime({ logger, executionBackend: new ScriptedBackend(held.script), heartbeatIntervalMs: 5 });
    const server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, http1Port: 0, logger });
    try {
      const runtimeId = runtime.runtimeId;
      const headers = { "content-type": "application/connect+json", "connect-protocol-version": "1" };
      const path = "/worker_runtime.v1.WorkerObservation/WatchRuntime";
      for (let round = 0; round < 5; round++) {
        // HTTP/2: the client resets its stream, then destroys the whole session.
        const session = http2.connect(`http://${server.h2Address}`);
        const stream = session.request({ ":method": "POST", ":path": path, ...headers });
        stream.end(streamBody({ runtimeId }));
        await new Promise((resolve) => stream.once("data", resolve));
        if (round % 2 === 0) stream.close(http2.constants.NGHTTP2_CANCEL);
        session.destroy();

        // HTTP/1.1: the client destroys its socket mid-stream, heartbeats still flowing.
        await new Promise<void>((resolve, reject) => {
          const request = http.request(`http://${server.http1Address}${path}`, { method: "POST", headers }, (response) => {
            response.once("data", () => {
              request.destroy();
              resolve();
            });
          });
          request.on("error", () => undefined);
          request.once("error", reject);
          request.end(streamBody({ runtimeId }));
        });

        // A reflection stream (bidi, as grpcurl and buf curl use it) cut while it waits for more requests.
        const reflection = http2.connect(`http://${server.h2Address}`);
        const bidi = reflection.request({
          ":method": "POST",
          ":path": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
          "content-type": "application/grpc",
          te: "trailers",
        });
        bidi.write(Buffer.from([0, 0, 0, 0, 2, 0x3a, 0x00]));
        await new Promise((resolve) => bidi.once("data", resolve));
        reflection.destroy();

        // A unary request whose body never arrives in full.
        await new Promise<void>((resolve) => {
          const request = http.request(`http://${server.http1Address}/worker_runtime.v1.RuntimeManagement/GetRuntime`, {
            method: "POST",
            headers: { "content-type": "application/json", "connect-protocol-version": "1", "content-length": 100 },
          });
          request.on("error", () => undefined);
          request.write("{");
          setTimeout(() => {
            request.destroy();
            resolve();
          }, 20);
        });
      }
      await eventually(() => runtime.stats().subscriptions === 0, 5_000, "every watch released");
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(records.filter((record) => record.level === "error")).toEqual([]);
    } finally {
      held.release();
      await server.close(0);
    }
  });
});
