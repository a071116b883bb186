import {
  Code,
  ConnectError,
  createClient as createConnectClient,
  type Interceptor,
  type StreamResponse,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager, type GrpcTransportOptions } from "@connectrpc/connect-node";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HeartbeatSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createClient, createFastGrpcTransport } from "../../src/grpc-client/index.js";
import { GrpcStreamReader, READ_AHEAD_BYTES } from "../../src/grpc-client/grpc-stream-reader.js";
import { createClientTracingInterceptor } from "../../src/telemetry/tracing/index.js";
import { installTracing, type InstalledTracing } from "../../src/telemetry/tracing/tracing-sdk.js";
import { CALL_ID_HEADER, FLOOD_MESSAGE_BYTES, MANY, SCENARIO_HEADER, startScenarioServer, type ScenarioServer } from "./scenario-server.js";

type Kind = "connect" | "fast";
type Entries = Array<[string, string]>;

/** Everything a caller and its interceptors can observe of one call. */
interface Outcome {
  messages: string[];
  error?: { code: string; rawMessage: string; details: string[]; metadata: Entries };
  header?: Entries;
  trailer?: Entries;
  serverSawCancel?: boolean;
  /** The client spans our tracing interceptor ended for the call. */
  spans?: Array<{
    name: string;
    kind: number;
    attributes: Record<string, unknown>;
    status: { code: number; message?: string | undefined };
  }>;
  /** Whether the interceptors were handed the fast reader (so the fast path, not connect's, was measured). */
  fastReader?: boolean;
  /** The call options' onHeader and onTrailer, in the order they ran among the messages. */
  callbacks: string[];
  /** What a next() after the stream ended or failed gives. */
  afterEnd?: IteratorResult<unknown>;
}

interface Case {
  name: string;
  scenario: string;
  client?: Partial<GrpcTransportOptions>;
  timeoutMs?: number;
  /** Abort the call's signal after this many messages. */
  abortAfter?: number;
  /** Break out of the loop after this many messages, then abort the call's signal. */
  breakAfter?: number;
  /** What this case must show (beyond both transports agreeing). */
  check(outcome: Outcome): void;
}

/** Big cursors are shown by size, so a failed comparison prints readably. */
const short = (text: string): string => (text.length > 64 ? `${text.slice(0, 8)}…(${text.length})` : text);
/** Response headers without `date`, which differs between two calls a second apart. */
const entries = (headers: Headers): Entries => [...headers.entries()].filter(([key]) => key !== "date");

describe("createFastGrpcTransport against connect's createGrpcTransport", () => {
  let server: ScenarioServer;
  let calls = 0;
  let memory: InMemorySpanExporter;
  let tracing: InstalledTracing;
  beforeAll(async () => {
    server = await startScenarioServer();
    memory = new InMemorySpanExporter();
    tracing = installTracing({ serviceName: "fast-grpc-transport-test", spanProcessors: [new SimpleSpanProcessor(memory)] });
  });
  afterAll(async () => {
    await tracing.shutdown();
    await server.close();
  });

  /**
   * Runs one call over a fresh HTTP/2 session with the given transport kind
   * (connect's transport and client, or the product's: the fast transport and
   * src/grpc-client's createClient); never throws.
   */
  async function run(kind: Kind, test: Case): Promise<Outcome> {
    const sessionManager = new Http2SessionManager(server.baseUrl);
    const callId = `${kind}-${++calls}`;
    const responses: StreamResponse[] = [];
    // One interceptor adds a request header (the server echoes it in its header and trailer), one keeps the response.
    const addHeader: Interceptor = (next) => (request) => {
      request.header.set("x-added", "hello");
      return next(request);
    };
    const keepResponse: Interceptor = (next) => async (request) => {
      const response = await next(request);
      if (response.stream) responses.push(response);
      return response;
    };
    // The product's tracing interceptor outermost, as in the Backend; keepResponse innermost, to see what the transport returns.
    const traced = createClientTracingInterceptor({ rpcSystem: "grpc", serverAddress: "127.0.0.1", serverPort: 1 });
    const interceptors = [traced, addHeader, keepResponse];
    const options: GrpcTransportOptions = { baseUrl: server.baseUrl, sessionManager, interceptors, ...test.client };
    memory.reset();
    const transport: Transport = kind === "fast" ? createFastGrpcTransport(options) : createGrpcTransport(options);
    const client = kind === "fast" ? createClient(WorkerObservation, transport) : createConnectClient(WorkerObservation, transport);
    const controller = new AbortController();
    const outcome: Outcome = { messages: [], callbacks: [] };
    const stream = client.watchWorker(
      {},
      {
        headers: { [SCENARIO_HEADER]: test.scenario, [CALL_ID_HEADER]: callId },
        signal: controller.signal,
        ...(test.timeoutMs !== undefined ? { timeoutMs: test.timeoutMs } : {}),
        onHeader: (header) => outcome.callbacks.push(`header after ${outcome.messages.length}: ${header.get("x-echo")}`),
        onTrailer: (trailer) => outcome.callbacks.push(`trailer after ${outcome.messages.length}: ${trailer.get("x-trailer-echo")}`),
      },
    );
    try {
      for await (const message of stream) {
        outcome.messages.push(short(message.heartbeat?.cursor ?? ""));
        if (outcome.messages.length === test.abortAfter) controller.abort();
        if (outcome.messages.length === test.breakAfter) break;
      }
      if (test.breakAfter !== undefined) controller.abort();
    } catch (error) {
      const e = ConnectError.from(error);
      outcome.error = {
        code: Code[e.code],
        rawMessage: e.rawMessage,
        details: e.findDetails(HeartbeatSchema).map((detail) => detail.cursor),
        metadata: entries(e.metadata),
      };
    }
    // Ended or failed once: the stream is done from then on (a broken-out loop leaves it open).
    if (test.breakAfter === undefined) outcome.afterEnd = await stream[Symbol.asyncIterator]().next();
    const response = responses[0];
    if (response) {
      outcome.fastReader = response.message instanceof GrpcStreamReader;
      outcome.header = entries(response.header);
      outcome.trailer = entries(response.trailer);
    }
    if (test.abortAfter !== undefined || test.breakAfter !== undefined || test.timeoutMs !== undefined) {
      outcome.serverSawCancel = await Promise.race([
        server.handlerAborted(callId).then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000)),
      ]);
    }
    outcome.spans = memory.getFinishedSpans().map((span) => ({
      name: span.name,
      kind: span.kind,
      attributes: { ...span.attributes },
      status: { code: span.status.code, message: span.status.message },
    }));
    sessionManager.abort();
    return outcome;
  }

  const cases: Case[] = [
    {
      name: "a stream of many messages, the large ones gzip-compressed by the server",
      scenario: "many",
      check: (o) => {
        expect(o.messages).toEqual(MANY.map(short));
        expect(o.error).toBeUndefined();
        expect(o.header).toContainEqual(["grpc-encoding", "gzip"]);
        expect(o.header).toContainEqual(["x-echo", "hello"]);
        expect(o.trailer).toContainEqual(["x-trailer-echo", "hello"]);
        expect(o.callbacks).toEqual(["header after 0: hello", `trailer after ${MANY.length}: hello`]);
        expect(o.afterEnd).toEqual({ done: true, value: undefined });
      },
    },
    {
      name: "a stream of many messages uncompressed, 40 KiB ones spanning several DATA frames",
      scenario: "many",
      client: { acceptCompression: [] },
      check: (o) => {
        expect(o.messages).toEqual(MANY.map(short));
        expect(o.header?.some(([key]) => key === "grpc-encoding")).toBe(false);
      },
    },
    {
      name: "several messages in one DATA frame and a frame header split across writes",
      scenario: "raw-frames",
      check: (o) => {
        expect(o.messages).toEqual(["a", "b", "c", short("d".repeat(100))]);
        expect(o.error).toBeUndefined();
      },
    },
    {
      name: "an empty stream",
      scenario: "empty",
      check: (o) => {
        expect(o.messages).toEqual([]);
        expect(o.error).toBeUndefined();
        expect(o.trailer).toContainEqual(["grpc-status", "0"]);
      },
    },
    {
      name: "an error status in the trailer, with details and metadata",
      scenario: "error-details",
      check: (o) => {
        expect(o.messages).toEqual(["one", "two"]);
        expect(o.error?.code).toBe("FailedPrecondition");
        expect(o.error?.rawMessage).toBe("it failed: 100% ☃\nsecond line");
        expect(o.error?.details).toEqual(["detail"]);
        expect(o.error?.metadata).toContainEqual(["x-meta", "trailer-value"]);
        expect(o.error?.metadata).toContainEqual(["x-error-meta", "v"]);
        expect(o.error?.metadata).toContainEqual(["x-echo", "hello"]);
        // No trailer callback for a failed call; the stream is done after its error.
        expect(o.callbacks).toEqual(["header after 0: hello"]);
        expect(o.afterEnd).toEqual({ done: true, value: undefined });
      },
    },
    {
      name: "an error before the first message",
      scenario: "error-first",
      check: (o) => {
        expect(o.messages).toEqual([]);
        expect(o.error?.code).toBe("PermissionDenied");
        expect(o.error?.rawMessage).toBe("refused at once");
      },
    },
    {
      name: "a trailers-only response (the status in the header block)",
      scenario: "raw-trailers-only",
      check: (o) => {
        expect(o.error?.code).toBe("NotFound");
        expect(o.error?.rawMessage).toBe("no such worker");
      },
    },
    {
      name: "an HTTP error status",
      scenario: "raw-http-503",
      check: (o) => {
        expect(o.error?.code).toBe("Unavailable");
        expect(o.error?.rawMessage).toBe("HTTP 503");
      },
    },
    {
      name: "a response that is not gRPC",
      scenario: "raw-html",
      check: (o) => expect(o.error?.code).toBe("Unknown"),
    },
    {
      name: "a response ending without a status",
      scenario: "raw-missing-status",
      check: (o) => {
        expect(o.messages).toEqual(["only"]);
        expect(o.error).toMatchObject({ code: "Internal", rawMessage: "protocol error: missing status" });
      },
    },
    {
      name: "a response ending inside a message",
      scenario: "raw-incomplete",
      check: (o) => expect(o.error).toMatchObject({ code: "InvalidArgument", rawMessage: "protocol error: incomplete envelope" }),
    },
    {
      name: "a message whose bytes do not parse",
      scenario: "raw-garbage",
      check: (o) => {
        expect(o.messages).toEqual(["fine"]);
        expect(o.error?.code).toBe("Internal");
        expect(o.error?.rawMessage).toMatch(/^parse binary: /);
      },
    },
    {
      name: "a message over readMaxBytes",
      scenario: "big",
      client: { readMaxBytes: 4096, acceptCompression: [] },
      check: (o) => expect(o.error?.code).toBe("ResourceExhausted"),
    },
    {
      name: "a compressed message that decompresses to over readMaxBytes",
      scenario: "big",
      client: { readMaxBytes: 4096 },
      check: (o) => {
        expect(o.header).toContainEqual(["grpc-encoding", "gzip"]);
        expect(o.error?.code).toBe("ResourceExhausted");
      },
    },
    {
      name: "the deadline passing mid-stream",
      scenario: "slow",
      timeoutMs: 300,
      check: (o) => {
        expect(o.messages).toEqual(["first"]);
        expect(o.error?.code).toBe("DeadlineExceeded");
        expect(o.serverSawCancel).toBe(true);
      },
    },
    {
      name: "the caller aborting mid-stream",
      scenario: "slow",
      abortAfter: 1,
      check: (o) => {
        expect(o.messages).toEqual(["first"]);
        expect(o.error?.code).toBe("Canceled");
        expect(o.serverSawCancel).toBe(true);
      },
    },
    {
      name: "the consumer breaking out of the loop (the generated client leaves the stream to the call's signal)",
      scenario: "slow",
      breakAfter: 1,
      check: (o) => {
        expect(o.messages).toEqual(["first"]);
        expect(o.error).toBeUndefined();
        expect(o.serverSawCancel).toBe(true);
      },
    },
    {
      name: "the server resetting the stream mid-way",
      scenario: "raw-reset",
      check: (o) => {
        expect(o.messages).toEqual(["1", "2"]);
        // Node reports the reset as a stream error first, which connect-node types Internal.
        expect(o.error).toMatchObject({ code: "Internal", rawMessage: "Stream closed with error code NGHTTP2_REFUSED_STREAM" });
      },
    },
    {
      name: "the connection dropping mid-stream",
      scenario: "raw-crash",
      check: (o) => {
        expect(o.messages).toEqual(["1", "2"]);
        expect(o.error).toBeDefined();
      },
    },
  ];

  for (const test of cases) {
    it(test.name, async () => {
      const connect = await run("connect", test);
      const fast = await run("fast", test);
      test.check(connect);
      expect(connect.spans).toHaveLength(1);
      if (connect.fastReader !== undefined) {
        expect(connect.fastReader).toBe(false);
        expect(fast.fastReader).toBe(true);
      }
      expect({ ...fast, fastReader: undefined }).toEqual({ ...connect, fastReader: undefined });
    });
  }

  it("the product's createClient gives next() calls made without waiting their messages in order, and no return() or throw(), as connect's", async () => {
    const seen: Record<string, unknown> = {};
    for (const kind of ["connect", "fast"] as const) {
      const sessionManager = new Http2SessionManager(server.baseUrl);
      const transport = createFastGrpcTransport({ baseUrl: server.baseUrl, sessionManager });
      const client = kind === "fast" ? createClient(WorkerObservation, transport) : createConnectClient(WorkerObservation, transport);
      const stream = client.watchWorker({}, { headers: { [SCENARIO_HEADER]: "many", [CALL_ID_HEADER]: `${kind}-queued-${++calls}` } });
      const iterator = stream[Symbol.asyncIterator]();
      const results = await Promise.all(Array.from({ length: MANY.length + 2 }, () => iterator.next()));
      seen[kind] = {
        results: results.map((r) => (r.done ? "done" : short(r.value.heartbeat?.cursor ?? ""))),
        methods: ["return", "throw"].filter((name) => name in iterator),
      };
      sessionManager.abort();
    }
    expect(seen["connect"]).toEqual({ results: [...MANY.map(short), "done", "done"], methods: [] });
    expect(seen["fast"]).toEqual(seen["connect"]);
  });

  it("holds a server that sends faster than the consumer reads (HTTP/2 flow control), as connect does", async () => {
    for (const kind of ["connect", "fast"] as const) {
      const sessionManager = new Http2SessionManager(server.baseUrl);
      const options = { baseUrl: server.baseUrl, sessionManager, acceptCompression: [] };
      const transport = kind === "fast" ? createFastGrpcTransport(options) : createGrpcTransport(options);
      const callId = `${kind}-flood-${++calls}`;
      const controller = new AbortController();
      const stream = (kind === "fast" ? createClient : createConnectClient)(WorkerObservation, transport).watchWorker(
        {},
        { headers: { [SCENARIO_HEADER]: "flood", [CALL_ID_HEADER]: callId }, signal: controller.signal },
      );
      const iterator = stream[Symbol.asyncIterator]();
      expect((await iterator.next()).done).toBe(false);
      // The consumer stalls; the server may fill the read-ahead and the HTTP/2 windows, no more.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const sentBytes = server.yielded(callId) * FLOOD_MESSAGE_BYTES;
      expect(sentBytes).toBeGreaterThan(0);
      expect(sentBytes).toBeLessThan(READ_AHEAD_BYTES + 1024 * 1024);
      // Reading on gets everything: the paused stream flows again.
      let read = 1;
      while (!(await iterator.next()).done) read++;
      expect(read).toBe(1024);
      sessionManager.abort();
    }
  });
});
