import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { once } from "node:events";
import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { HeartbeatSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import {
  WatchWorkerResponseSchema,
  WorkerObservation,
  type WatchWorkerResponse,
} from "../../gen/worker_runtime/v1/worker_observation_pb.js";

/** The request header naming what the server does with a WatchWorker call. */
export const SCENARIO_HEADER = "x-scenario";

/** A request header naming one call, to ask the server whether it saw that call cancelled. */
export const CALL_ID_HEADER = "x-call-id";

/** A message whose heartbeat cursor is `text` (any size), so a test can read back what was sent. */
export function beat(text: string): WatchWorkerResponse {
  return create(WatchWorkerResponseSchema, { heartbeat: { cursor: text } });
}

/** 300 messages; every 50th is 40 KiB (over a 16 KiB HTTP/2 DATA frame, and compressible). */
export const MANY = Array.from({ length: 300 }, (_, i) => (i % 50 === 25 ? `big${i}-${"x".repeat(40 * 1024)}` : `m${i}`));

/** A WatchWorker server with one scripted behaviour per scenario, for comparing client transports. */
export interface ScenarioServer {
  baseUrl: string;
  /** Resolves when the call sent with this `x-call-id` saw its handler signal abort (the server noticed the cancel). */
  handlerAborted(callId: string): Promise<void>;
  /** How many messages the call with this `x-call-id` has yielded so far (the flood scenario). */
  yielded(callId: string): number;
  close(): Promise<void>;
}

/** The flood scenario's message size and count: 4 MiB in all, far more than any read-ahead. */
export const FLOOD_MESSAGE_BYTES = 4096;
const FLOOD_MESSAGES = 1024;

/**
 * Scenarios served by connect's router (the reference server): messages,
 * errors, slow streams. Those named `raw-*` are written by hand on the
 * HTTP/2 stream, for what a connect server never does on its own (several
 * messages in one DATA frame, a frame header split across writes, HTTP
 * errors, a dropped connection mid-stream).
 */
export async function startScenarioServer(): Promise<ScenarioServer> {
  const aborted = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  const abortedEntry = (callId: string) => {
    let entry = aborted.get(callId);
    if (!entry) {
      let resolve = (): void => undefined;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      entry = { promise, resolve };
      aborted.set(callId, entry);
    }
    return entry;
  };
  const yielded = new Map<string, number>();
  async function* watchWorker(_request: unknown, context: HandlerContext): AsyncIterable<WatchWorkerResponse> {
    const scenario = context.requestHeader.get(SCENARIO_HEADER) ?? "";
    const callId = context.requestHeader.get(CALL_ID_HEADER) ?? scenario;
    context.signal.addEventListener("abort", () => abortedEntry(callId).resolve());
    const echo = context.requestHeader.get("x-added");
    if (echo !== null) {
      context.responseHeader.set("x-echo", echo);
      context.responseTrailer.set("x-trailer-echo", echo);
    }
    switch (scenario) {
      case "many":
        for (const text of MANY) yield beat(text);
        return;
      case "empty":
        return;
      case "flood":
        for (let i = 0; i < FLOOD_MESSAGES; i++) {
          yield beat("f".repeat(FLOOD_MESSAGE_BYTES));
          yielded.set(callId, i + 1);
        }
        return;
      case "error-details":
        yield beat("one");
        yield beat("two");
        context.responseTrailer.set("x-meta", "trailer-value");
        throw new ConnectError("it failed: 100% ☃\nsecond line", Code.FailedPrecondition, { "x-error-meta": "v" }, [
          { desc: HeartbeatSchema, value: { cursor: "detail" } },
        ]);
      case "error-first":
        throw new ConnectError("refused at once", Code.PermissionDenied);
      case "big":
        yield beat("y".repeat(10 * 1024));
        // Held open until the client gives up on the message: trailers sent at once raced the
        // client's refusal (a gzip message is inflated asynchronously), so whether the response
        // had a trailer when it failed depended on timing, and the two transports could differ.
        await new Promise<void>((resolve) => context.signal.addEventListener("abort", () => resolve()));
        return;
      case "slow":
        yield beat("first");
        await new Promise<void>((resolve) => context.signal.addEventListener("abort", () => resolve()));
        return;
      default:
        throw new ConnectError(`unknown scenario ${scenario}`, Code.InvalidArgument);
    }
  }
  const adapter = connectNodeAdapter({
    routes: (router: ConnectRouter) => {
      router.service(WorkerObservation, { watchWorker });
    },
  });
  // The sockets by client port, so the crash scenario can destroy its own connection's socket.
  const sockets = new Map<number, Socket>();
  const server = http2.createServer((request, response) => {
    const scenario = String(request.headers[SCENARIO_HEADER] ?? "");
    if (!scenario.startsWith("raw-")) adapter(request, response);
    else rawScenario(scenario, response, () => sockets.get(request.socket.remotePort ?? 0)?.destroy());
  });
  server.on("connection", (socket: Socket) => {
    sockets.set(socket.remotePort ?? 0, socket);
    socket.once("close", () => sockets.delete(socket.remotePort ?? 0));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    handlerAborted: (callId) => abortedEntry(callId).promise,
    yielded: (callId) => yielded.get(callId) ?? 0,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function frame(message: WatchWorkerResponse): Buffer {
  const data = toBinary(WatchWorkerResponseSchema, message);
  const out = Buffer.alloc(5 + data.length);
  out.writeUInt32BE(data.length, 1);
  out.set(data, 5);
  return out;
}

/**
 * Hand-written responses (through Node's compatibility API, which sends the
 * trailers it was given when the response ends); the request body is
 * drained first, as a server would read it.
 */
function rawScenario(scenario: string, response: http2.Http2ServerResponse, crash: () => void): void {
  response.stream.resume();
  const grpc = { "content-type": "application/grpc+proto" };
  switch (scenario) {
    case "raw-frames": {
      response.writeHead(200, grpc);
      // Three messages in one write (one DATA frame), then one whose header is split across writes.
      response.write(Buffer.concat([frame(beat("a")), frame(beat("b")), frame(beat("c"))]));
      const split = frame(beat("d".repeat(100)));
      response.write(split.subarray(0, 3));
      setTimeout(() => {
        response.write(split.subarray(3, 50));
        setTimeout(() => {
          response.addTrailers({ "grpc-status": "0" });
          response.end(split.subarray(50));
        }, 5);
      }, 5);
      return;
    }
    case "raw-trailers-only":
      response.stream.respond({ ":status": 200, ...grpc, "grpc-status": "5", "grpc-message": "no%20such%20worker" }, { endStream: true });
      return;
    case "raw-http-503":
      response.writeHead(503, { "content-type": "text/plain" });
      response.end("overloaded");
      return;
    case "raw-html":
      response.writeHead(200, { "content-type": "text/html" });
      response.end("<html></html>");
      return;
    case "raw-missing-status":
      response.writeHead(200, grpc);
      response.addTrailers({ "x-other": "1" });
      response.end(frame(beat("only")));
      return;
    case "raw-garbage": {
      // A well-formed message, then one whose bytes are not a WatchWorkerResponse (a string field cut short).
      response.writeHead(200, grpc);
      response.addTrailers({ "grpc-status": "0" });
      const garbage = Buffer.from([0x0a, 0x05, 0x12, 0x09, 0x61]);
      const header = Buffer.alloc(5);
      header.writeUInt32BE(garbage.length, 1);
      response.end(Buffer.concat([frame(beat("fine")), header, garbage]));
      return;
    }
    case "raw-incomplete":
      response.writeHead(200, grpc);
      response.addTrailers({ "grpc-status": "0" });
      response.end(frame(beat("cut")).subarray(0, 7));
      return;
    case "raw-reset":
      response.writeHead(200, grpc);
      response.write(Buffer.concat([frame(beat("1")), frame(beat("2"))]));
      // The server resets the stream mid-way (RST_STREAM REFUSED_STREAM).
      setTimeout(() => response.stream.close(http2.constants.NGHTTP2_REFUSED_STREAM), 20);
      return;
    case "raw-crash":
      response.writeHead(200, grpc);
      response.write(Buffer.concat([frame(beat("1")), frame(beat("2"))]));
      // The server process dies mid-stream: the connection is gone without a GOAWAY.
      setTimeout(crash, 20);
      return;
    default:
      response.writeHead(404);
      response.end();
  }
}
