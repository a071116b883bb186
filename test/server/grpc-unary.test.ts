import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createConnectRouter, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { once } from "node:events";
import * as http2 from "node:http2";
import { brotliDecompressSync, gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { SendInputRequestSchema, SendInputResponseSchema, WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { createRuntime, type Logger, silentLogger } from "../../src/runtime/index.js";
import { captureGrpcDirectMethods } from "../../src/server/grpc-direct-calls.js";
import { startRuntimeServer, type RuntimeServer } from "../../src/server/index.js";
import { eventually, startHarness, type Harness } from "../support/harness.js";
import { grpcFrames, rawGrpcCall, rawGrpcRequest } from "../support/raw-grpc.js";
import { grpcFrame } from "../support/raw-http2.js";
import { replyWith, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * Unary calls over binary gRPC on HTTP/2 are answered by the server's own
 * handler (src/server/grpc-unary-call.ts), not connect-node's pipeline. On
 * the wire they must be what connect sends: header, one message, trailers
 * with the status; the protocol's refusals with connect's codes and words;
 * compression both ways; the interceptors' headers; and errors typed.
 */
describe("unary calls over binary gRPC", () => {
  let harness: Harness;
  const sendInputPath = "/worker_runtime.v1.WorkerInteraction/SendInput";
  let worker: WorkerRef | undefined;

  beforeAll(async () => {
    harness = await startHarness({ executionBackend: new ScriptedBackend(replyWith("ok", 1)) });
    worker = await newWorker();
  });
  afterAll(async () => {
    await harness.close();
  });

  async function newWorker(): Promise<WorkerRef | undefined> {
    const catalog = createClient(WorkerCatalog, createGrpcTransport({ baseUrl: harness.baseUrl }));
    return (await catalog.createWorker({ runtimeId: harness.runtime.runtimeId })).worker?.ref;
  }

  function sendInputBody(text: string, ref = worker): Uint8Array {
    return toBinary(SendInputRequestSchema, create(SendInputRequestSchema, { worker: ref, input: { text } }));
  }

  it("answers with the header, one message and an OK status, with the interceptors' response header", async () => {
    const ref = await newWorker();
    const answer = await rawGrpcCall(harness.baseUrl, sendInputPath, grpcFrame(sendInputBody("hello", ref)));
    expect(answer.headers[":status"]).toBe(200);
    expect(answer.headers["content-type"]).toBe("application/grpc+proto");
    // Set by the request-logging interceptor: interceptors run on this path too.
    expect(answer.headers["x-request-id"]).toMatch(/\S/);
    expect(answer.frames).toHaveLength(1);
    expect(answer.frames[0]?.flag).toBe(0);
    const response = fromBinary(SendInputResponseSchema, answer.frames[0]?.body ?? new Uint8Array());
    expect(response.run?.input?.text).toBe("hello");
    expect(response.run?.worker?.workerId).toBe(ref?.workerId);
    expect(answer.trailers["grpc-status"]).toBe("0");
  });

  it("reads a gzip request, and compresses a large answer only when the client takes gzip", async () => {
    const text = "0123456789abcdef".repeat(5 * 1024); // 80 KiB of input, echoed in the answer's run: over 64 KiB
    const call = async (request: "gzip" | "plain", accept: "gzip" | "nothing") => {
      const body = sendInputBody(text, await newWorker());
      const frame = request === "gzip" ? grpcFrame(gzipSync(body), 1) : grpcFrame(body);
      const headers = {
        ...(request === "gzip" ? { "grpc-encoding": "gzip" } : {}),
        ...(accept === "gzip" ? { "grpc-accept-encoding": "gzip" } : {}),
      };
      const answer = await rawGrpcCall(harness.baseUrl, sendInputPath, frame, headers);
      expect(answer.trailers["grpc-status"]).toBe("0");
      const first = answer.frames[0];
      const bytes = first?.flag === 1 ? gunzipSync(first.body) : (first?.body ?? new Uint8Array());
      expect(fromBinary(SendInputResponseSchema, bytes).run?.input?.text).toBe(text);
      return { encoding: answer.headers["grpc-encoding"], flag: first?.flag };
    };
    expect(await call("gzip", "gzip")).toEqual({ encoding: "gzip", flag: 1 });
    expect(await call("plain", "gzip")).toEqual({ encoding: "gzip", flag: 1 });
    // A client that sends gzip takes gzip (gRPC's rule), even without grpc-accept-encoding.
    expect(await call("gzip", "nothing")).toEqual({ encoding: "gzip", flag: 1 });
    expect(await call("plain", "nothing")).toEqual({ encoding: undefined, flag: 0 });
  });

  it("sends a small answer plain even when the client accepts gzip", async () => {
    const ref = await newWorker();
    const answer = await rawGrpcCall(harness.baseUrl, sendInputPath, grpcFrame(sendInputBody("small", ref)), {
      "grpc-accept-encoding": "gzip",
    });
    expect(answer.headers["grpc-encoding"]).toBe("gzip");
    expect(answer.frames.map((frame) => frame.flag)).toEqual([0]);
  });

  it("refuses a missing or an extra request message with UNIMPLEMENTED, as connect does", async () => {
    const missing = await rawGrpcCall(harness.baseUrl, sendInputPath, new Uint8Array());
    expect(missing.frames).toHaveLength(0);
    expect(missing.trailers["grpc-status"]).toBe(String(Code.Unimplemented));
    expect(decodeURIComponent(String(missing.trailers["grpc-message"]))).toBe("protocol error: missing input message for unary method");

    const twice = Buffer.concat([grpcFrame(sendInputBody("one")), grpcFrame(sendInputBody("two"))]);
    const extra = await rawGrpcCall(harness.baseUrl, sendInputPath, twice);
    expect(extra.frames).toHaveLength(0);
    expect(extra.trailers["grpc-status"]).toBe(String(Code.Unimplemented));
    expect(decodeURIComponent(String(extra.trailers["grpc-message"]))).toBe(
      "protocol error: received extra input message for unary method",
    );
  });

  it("refuses a request encoding it does not know with UNIMPLEMENTED, naming the ones it accepts", async () => {
    const answer = await rawGrpcCall(harness.baseUrl, sendInputPath, grpcFrame(sendInputBody("x"), 1), { "grpc-encoding": "snappy" });
    expect(answer.trailers["grpc-status"]).toBe(String(Code.Unimplemented));
    expect(decodeURIComponent(String(answer.trailers["grpc-message"]))).toBe(
      'unknown compression "snappy": supported encodings are gzip,br',
    );
    expect(answer.trailers["grpc-accept-encoding"]).toBe("gzip,br");
  });

  it("refuses a malformed grpc-timeout with an error status", async () => {
    const answer = await rawGrpcCall(harness.baseUrl, sendInputPath, grpcFrame(sendInputBody("x")), { "grpc-timeout": "soon" });
    expect(answer.frames).toHaveLength(0);
    expect(answer.trailers["grpc-status"]).toBe(String(Code.InvalidArgument));
  });

  it("types an undecodable request as INVALID_ARGUMENT with the ErrorDetail", async () => {
    const answer = await rawGrpcCall(harness.baseUrl, sendInputPath, grpcFrame(Buffer.from([0xff, 0xff, 0xff])));
    expect(answer.frames).toHaveLength(0);
    expect(answer.trailers["grpc-status"]).toBe(String(Code.InvalidArgument));
    expect(answer.trailers["grpc-status-details-bin"]).toBeTruthy();
  });

  it("refuses a request over the message limit with RESOURCE_EXHAUSTED", async () => {
    const limit = harness.runtime.limits.maxMessageBytes;
    const answer = await rawGrpcCall(harness.baseUrl, sendInputPath, grpcFrame(Buffer.alloc(10), 0, limit + 1));
    expect(answer.trailers["grpc-status"]).toBe(String(Code.ResourceExhausted));
  });

  it("carries a handler's error as its typed status and ErrorDetail", async () => {
    const unknown = { runtimeId: harness.runtime.runtimeId, workerId: "wk_unknown" } as WorkerRef;
    const answer = await rawGrpcCall(harness.baseUrl, sendInputPath, grpcFrame(sendInputBody("x", unknown)));
    expect(answer.frames).toHaveLength(0);
    expect(answer.trailers["grpc-status"]).toBe(String(Code.NotFound));
    expect(answer.trailers["grpc-status-details-bin"]).toBeTruthy();
  });

  it("keeps serving after a client resets a call before its answer", async () => {
    const session = http2.connect(harness.baseUrl);
    try {
      const stream = rawGrpcRequest(session, sendInputPath, grpcFrame(sendInputBody("gone", await newWorker())));
      stream.close(http2.constants.NGHTTP2_CANCEL);
    } finally {
      session.close();
    }
    const answer = await rawGrpcCall(harness.baseUrl, sendInputPath, grpcFrame(sendInputBody("after", await newWorker())));
    expect(answer.trailers["grpc-status"]).toBe("0");
  });
});

/**
 * Cases the runtime's own services never produce, from a scripted SendInput
 * (its request's text picks the answer) and an interceptor outside the
 * error mapping (its `x-scenario` header picks what it does): the direct
 * path must answer them as connect's gRPC handler does.
 */
describe("unary calls over binary gRPC, scripted", () => {
  const MAX_MESSAGE_BYTES = 200_000;
  const path = "/worker_runtime.v1.WorkerInteraction/SendInput";
  const logged: { level: string; message: string }[] = [];
  const logger: Logger = {
    info: (message) => logged.push({ level: "info", message }),
    warn: (message) => logged.push({ level: "warn", message }),
    error: (message) => logged.push({ level: "error", message }),
  };
  let server: RuntimeServer;
  let baseUrl: string;
  /** Lets the "held" call answer. */
  let release = (): void => undefined;
  /** Called when a "held" call reaches the implementation. */
  let entered = (): void => undefined;
  /** Called when a "held" call's implementation stops waiting (released, or its client gone). */
  let left = (): void => undefined;
  /** The signal of the last "keep-signal" call, read after its answer. */
  let keptSignal: AbortSignal | undefined;

  const scenarioInterceptor: Interceptor = (next) => async (request) => {
    const scenario = request.header.get("x-scenario");
    if (scenario === "refuse-before")
      throw new ConnectError("refused before the call", Code.PermissionDenied, { "x-refused-by": "interceptor" });
    const response = await next(request);
    if (scenario === "fail-after") throw new Error("failed after the call");
    if (scenario === "add-metadata") {
      response.header.set("x-interceptor", "header");
      response.trailer.set("x-interceptor", "trailer");
    }
    return response;
  };

  beforeAll(async () => {
    const runtime = await createRuntime({ logger: silentLogger, limits: { maxMessageBytes: MAX_MESSAGE_BYTES } });
    const routes = (router: ConnectRouter): void => {
      router.service(WorkerInteraction, {
        async sendInput(request, context) {
          const text = request.input?.text ?? "";
          switch (text) {
            case "metadata":
              context.responseHeader.set("x-impl", "header");
              context.responseHeader.append("set-cookie", "a=1");
              context.responseHeader.append("set-cookie", "b=2");
              context.responseTrailer.set("x-impl", "trailer");
              return { run: { runId: text } };
            case "refused":
              context.responseHeader.set("x-impl", "header");
              throw new ConnectError("refused by the implementation", Code.FailedPrecondition, { "x-refused-by": "implementation" });
            case "over-limit":
              return { run: { runId: "x".repeat(MAX_MESSAGE_BYTES) } };
            case "keep-signal":
              keptSignal = context.signal;
              return { run: { runId: text } };
            case "large":
              return { run: { runId: "0123456789abcdef".repeat(5 * 1024) } };
            case "held":
              entered();
              await new Promise<void>((resolve) => {
                release = resolve;
                context.signal.addEventListener("abort", () => resolve());
              });
              left();
              if (context.signal.aborted) throw context.signal.reason;
              return { run: { runId: text } };
            default:
              // "bytes:N": an answer of exactly N bytes (a run id of N - 8 bytes, for N from 16 Ki to 2 Mi).
              if (text.startsWith("bytes:")) return { run: { runId: "x".repeat(Number(text.slice(6)) - 8) } };
              // A partial init object, not a message: connect normalizes it.
              return { run: { runId: text } };
          }
        },
      });
    };
    server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger, interceptors: [scenarioInterceptor], routes });
    baseUrl = `http://${server.h2Address}`;
  });
  afterAll(async () => {
    await server.close(0);
  });

  const body = (text: string): Uint8Array =>
    grpcFrame(toBinary(SendInputRequestSchema, create(SendInputRequestSchema, { input: { text } })));
  const runIdOf = (bytes: Uint8Array): string | undefined => fromBinary(SendInputResponseSchema, bytes).run?.runId;
  /** The gRPC error in a raw answer's trailers, with our ErrorDetail's reason. */
  const trailerError = (trailers: http2.IncomingHttpHeaders) => {
    const headers = new Headers();
    for (const [key, value] of Object.entries(trailers)) if (typeof value === "string") headers.set(key, value);
    const error = findTrailerError(headers);
    return { code: error?.code, message: error?.rawMessage, reason: error?.findDetails(ErrorDetailSchema)[0]?.reason };
  };

  it("sends the headers and trailers the implementation and the interceptors set, each cookie on its own", async () => {
    const answer = await rawGrpcCall(baseUrl, path, body("metadata"), { "x-scenario": "add-metadata" });
    expect(answer.headers["x-impl"]).toBe("header");
    expect(answer.headers["x-interceptor"]).toBe("header");
    expect(answer.headers["set-cookie"]).toEqual(["a=1", "b=2"]);
    expect(answer.trailers["x-impl"]).toBe("trailer");
    expect(answer.trailers["x-interceptor"]).toBe("trailer");
    expect(answer.trailers["grpc-status"]).toBe("0");
    expect(answer.frames.map((frame) => runIdOf(frame.body))).toEqual(["metadata"]);
  });

  it("aborts the call's signal with an AbortError once the call is answered, as connect does", async () => {
    const answer = await rawGrpcCall(baseUrl, path, body("keep-signal"));
    expect(answer.trailers["grpc-status"]).toBe("0");
    expect(keptSignal?.aborted).toBe(true);
    expect(keptSignal?.reason).toBeInstanceOf(DOMException);
    expect((keptSignal?.reason as DOMException | undefined)?.name).toBe("AbortError");
  });

  it("ends an implementation's refusal with its code, its metadata in the trailers and the headers it set", async () => {
    const answer = await rawGrpcCall(baseUrl, path, body("refused"));
    expect(answer.headers["x-impl"]).toBe("header");
    expect(answer.frames).toHaveLength(0);
    expect(trailerError(answer.trailers)).toEqual({
      code: Code.FailedPrecondition,
      message: "refused by the implementation",
      reason: ErrorReason.INTERNAL,
    });
    expect(answer.trailers["x-refused-by"]).toBe("implementation");
  });

  it("types what an interceptor throws, before the implementation or after it", async () => {
    const before = await rawGrpcCall(baseUrl, path, body("any"), { "x-scenario": "refuse-before" });
    expect(before.frames).toHaveLength(0);
    expect(trailerError(before.trailers)).toEqual({
      code: Code.PermissionDenied,
      message: "refused before the call",
      reason: ErrorReason.INTERNAL,
    });
    expect(before.trailers["x-refused-by"]).toBe("interceptor");
    // Not a ConnectError: INTERNAL, its words kept from the client.
    const after = await rawGrpcCall(baseUrl, path, body("any"), { "x-scenario": "fail-after" });
    expect(after.frames).toHaveLength(0);
    expect(trailerError(after.trailers)).toEqual({ code: Code.Internal, message: "internal error", reason: ErrorReason.INTERNAL });
  });

  it("refuses an answer over writeMaxBytes with RESOURCE_EXHAUSTED and LIMIT_EXCEEDED, sending no message", async () => {
    const answer = await rawGrpcCall(baseUrl, path, body("over-limit"));
    expect(answer.frames).toHaveLength(0);
    const error = trailerError(answer.trailers);
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.message).toMatch(/larger than configured writeMaxBytes 200000/);
    expect(error.reason).toBe(ErrorReason.LIMIT_EXCEEDED);
  });

  it("compresses a large answer with brotli when that is what the client takes", async () => {
    const answer = await rawGrpcCall(baseUrl, path, body("large"), { "grpc-accept-encoding": "br" });
    expect(answer.headers["grpc-encoding"]).toBe("br");
    expect(answer.frames.map((frame) => frame.flag)).toEqual([1]);
    expect(runIdOf(brotliDecompressSync(answer.frames[0]?.body ?? new Uint8Array()))).toBe("0123456789abcdef".repeat(5 * 1024));
  });

  it("compresses an answer of exactly compressMinBytes (64 KiB), and not one a byte smaller", async () => {
    const flagsFor = async (bytes: number) => {
      const answer = await rawGrpcCall(baseUrl, path, body(`bytes:${bytes}`), { "grpc-accept-encoding": "gzip" });
      const frame = answer.frames[0];
      const plain = frame?.flag === 1 ? gunzipSync(frame.body) : frame?.body;
      return { flags: answer.frames.map((f) => f.flag), bytes: plain?.byteLength };
    };
    expect(await flagsFor(64 * 1024)).toEqual({ flags: [1], bytes: 64 * 1024 });
    expect(await flagsFor(64 * 1024 - 1)).toEqual({ flags: [0], bytes: 64 * 1024 - 1 });
  });

  it("delivers an answer larger than the client's flow-control window to a client that reads late", async () => {
    const session = http2.connect(baseUrl, { settings: { initialWindowSize: 1024 } });
    try {
      const stream = rawGrpcRequest(session, path, body("large"));
      const trailers = once(stream, "trailers");
      stream.pause();
      await new Promise((resolve) => setTimeout(resolve, 200));
      stream.resume();
      const runIds: (string | undefined)[] = [];
      for await (const frame of grpcFrames(stream)) runIds.push(runIdOf(frame.body));
      expect(runIds).toEqual(["0123456789abcdef".repeat(5 * 1024)]);
      expect(((await trailers)[0] as http2.IncomingHttpHeaders)["grpc-status"]).toBe("0");
    } finally {
      session.close();
    }
  });

  it("logs nothing for a client that resets its call while the implementation runs", async () => {
    logged.length = 0;
    const session = http2.connect(baseUrl);
    try {
      const reached = new Promise<void>((resolve) => {
        entered = resolve;
      });
      const stream = rawGrpcRequest(session, path, body("held"));
      stream.on("error", () => undefined);
      await reached;
      const gone = new Promise<void>((resolve) => {
        left = resolve;
      });
      stream.close(http2.constants.NGHTTP2_CANCEL);
      // The implementation sees its signal abort and throws; the handler then ends the call.
      await gone;
      await eventually(() => stream.closed);
    } finally {
      session.close();
    }
    const answer = await rawGrpcCall(baseUrl, path, body("after"));
    expect(answer.trailers["grpc-status"]).toBe("0");
    expect(logged).toEqual([]);
  });

  // Last: it closes the server.
  it("answers a call in flight when the server closes with a grace period", async () => {
    const reached = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const answered = rawGrpcCall(baseUrl, path, body("held"));
    await reached;
    const closed = server.close(1_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    release();
    const answer = await answered;
    expect(answer.frames.map((frame) => runIdOf(frame.body))).toEqual(["held"]);
    expect(answer.trailers["grpc-status"]).toBe("0");
    await closed;
  });
});

describe("which calls take the direct path", () => {
  const router = createConnectRouter();
  const direct = captureGrpcDirectMethods(router, {}, silentLogger);
  router.service(WorkerInteraction, { sendInput: () => ({}), streamInput: async function* () {} });
  const post = (contentType: string) => ({ method: "POST", headers: { "content-type": contentType } });

  it("takes unary and server-streaming calls over binary gRPC", () => {
    expect(direct.handlerFor("/worker_runtime.v1.WorkerInteraction/SendInput", post("application/grpc"))).toBeTypeOf("function");
    expect(direct.handlerFor("/worker_runtime.v1.WorkerInteraction/SendInput", post("application/grpc+proto"))).toBeTypeOf("function");
    expect(direct.handlerFor("/worker_runtime.v1.WorkerInteraction/StreamInput", post("application/grpc"))).toBeTypeOf("function");
  });

  it("leaves JSON gRPC, gRPC-Web, Connect, other methods and unknown paths to connect", () => {
    const path = "/worker_runtime.v1.WorkerInteraction/SendInput";
    expect(direct.handlerFor(path, post("application/grpc+json"))).toBeUndefined();
    expect(direct.handlerFor(path, post("application/grpc-web+proto"))).toBeUndefined();
    expect(direct.handlerFor(path, post("application/proto"))).toBeUndefined();
    expect(direct.handlerFor(path, { method: "GET", headers: { "content-type": "application/grpc" } })).toBeUndefined();
    expect(direct.handlerFor("/worker_runtime.v1.WorkerInteraction/Nope", post("application/grpc"))).toBeUndefined();
    // A method the service does not implement is connect's to answer (UNIMPLEMENTED).
    expect(direct.handlerFor("/worker_runtime.v1.WorkerInteraction/CancelRun", post("application/grpc"))).toBeUndefined();
  });
});
