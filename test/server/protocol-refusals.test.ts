import { fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import http from "node:http";
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { http2Exchange, type RawAnswer } from "../support/http2-exchange.js";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { clientsFor, PROTOCOLS, startHarness, type Harness } from "../support/harness.js";
import { expectError } from "../support/errors.js";
import { holdOpen, ScriptedBackend } from "../support/scripted-backend.js";
import { grpcFrame } from "../support/raw-http2.js";

/**
 * Refusals the protocol layer makes before (or after) a handler runs — an
 * undecodable body, a message over the size limit — must look like every
 * other error: the most specific code and our typed ErrorDetail, in every
 * protocol (gRPC, gRPC-Web, Connect unary, GET and streaming), and an
 * oversize request must leave the client's connection usable.
 */

const MAX_MESSAGE_BYTES = 64 * 1024;
const GET_RUNTIME = "/worker_runtime.v1.RuntimeManagement/GetRuntime";
const LIST_WORKERS = "/worker_runtime.v1.WorkerCatalog/ListWorkers";

let harness: Harness;
let session: http2.ClientHttp2Session;
/** Runs held open, so that inputs sent after them queue (and the queue is carried by a snapshot). */
const held = holdOpen("working");
/** Queued runs a worker may hold: enough for its snapshot to outgrow the message limit. */
const MAX_QUEUE_DEPTH = 400;
const backend = new ScriptedBackend(held.script);

beforeAll(async () => {
  harness = await startHarness({
    executionBackend: backend,
    limits: { maxMessageBytes: MAX_MESSAGE_BYTES, maxQueueDepth: MAX_QUEUE_DEPTH },
  });
  session = http2.connect(harness.baseUrl);
});

afterAll(async () => {
  held.release();
  session.destroy();
  await harness.close();
});

function h2(headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<RawAnswer> {
  return http2Exchange(session, headers, body);
}

/** The envelopes of a gRPC-Web or Connect streaming body. */
function envelopes(body: Buffer): { flags: number; data: Buffer }[] {
  const out: { flags: number; data: Buffer }[] = [];
  for (let offset = 0; offset + 5 <= body.length; ) {
    const length = body.readUInt32BE(offset + 1);
    out.push({ flags: body.readUInt8(offset), data: body.subarray(offset + 5, offset + 5 + length) });
    offset += 5 + length;
  }
  return out;
}

/** grpc-status and the ErrorDetail from gRPC(-Web) status headers. */
function grpcStatus(headers: Record<string, string>): { code: number; reason: ErrorReason | undefined } {
  const bin = headers["grpc-status-details-bin"];
  const status = bin ? fromBinary(StatusSchema, Buffer.from(bin, "base64")) : undefined;
  const detail = status?.details.find((any) => any.typeUrl.endsWith("worker_runtime.v1.ErrorDetail"));
  return { code: Number(headers["grpc-status"]), reason: detail ? fromBinary(ErrorDetailSchema, detail.value).reason : undefined };
}

/** The trailers of a gRPC-Web body. */
function grpcWebTrailers(body: Buffer): Record<string, string> {
  const trailer = envelopes(body).find((e) => (e.flags & 0x80) !== 0);
  const out: Record<string, string> = {};
  for (const line of trailer?.data.toString("utf8").split("\r\n") ?? []) {
    const colon = line.indexOf(":");
    if (colon > 0) out[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return out;
}

interface ConnectErrorJson {
  code?: string;
  details?: { type: string; debug?: { reason?: string } }[];
}

function connectReason(json: ConnectErrorJson): string | undefined {
  return json.details?.find((d) => d.type === "worker_runtime.v1.ErrorDetail")?.debug?.reason;
}

describe("malformed gRPC-Web bodies", () => {
  const bodies: [string, Buffer][] = [
    ["bytes that are not protobuf", grpcFrame(Buffer.from([0xff, 0xff, 0xff, 0xff]))],
    ["a message flagged compressed", grpcFrame(Buffer.from([0x0a, 0x01, 0x61]), 1)],
    ["a frame shorter than it says", grpcFrame(Buffer.from([0x0a]), 0).subarray(0, 4)],
  ];
  for (const [what, body] of bodies) {
    it(`answers ${what} with INVALID_ARGUMENT and the ErrorDetail (h2c)`, async () => {
      const answer = await h2({ ":method": "POST", ":path": LIST_WORKERS, "content-type": "application/grpc-web+proto" }, body);
      expect(answer.status).toBe(200);
      const status = grpcStatus(grpcWebTrailers(answer.body));
      expect(status).toEqual({ code: Code.InvalidArgument, reason: ErrorReason.INVALID_ARGUMENT });
    });
  }

  it("answers them with INVALID_ARGUMENT and the ErrorDetail over HTTP/1.1 too", async () => {
    const response = await fetch(`${harness.http1Url}${LIST_WORKERS}`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: grpcFrame(Buffer.from([0xff, 0xff, 0xff, 0xff])),
    });
    const status = grpcStatus(grpcWebTrailers(Buffer.from(await response.arrayBuffer())));
    expect(status).toEqual({ code: Code.InvalidArgument, reason: ErrorReason.INVALID_ARGUMENT });
  });
});

describe("Connect GET", () => {
  const get = async (query: string): Promise<{ status: number; json: ConnectErrorJson }> => {
    const response = await fetch(`${harness.http1Url}${LIST_WORKERS}?connect=v1&${query}`);
    return { status: response.status, json: (await response.json()) as ConnectErrorJson };
  };

  it("answers an undecodable binary message with 400 invalid_argument and the ErrorDetail", async () => {
    const { status, json } = await get(`encoding=proto&base64=1&message=${Buffer.from([0xff, 0xff, 0xff]).toString("base64url")}`);
    expect(status).toBe(400);
    expect(json.code).toBe("invalid_argument");
    expect(connectReason(json)).toBe("ERROR_REASON_INVALID_ARGUMENT");
  });

  it("answers undecodable JSON with the ErrorDetail", async () => {
    const { status, json } = await get(`encoding=json&message=${encodeURIComponent("{not json")}`);
    expect(status).toBe(400);
    expect(json.code).toBe("invalid_argument");
    expect(connectReason(json)).toBe("ERROR_REASON_INVALID_ARGUMENT");
  });

  it("answers a valid GET", async () => {
    const response = await fetch(`${harness.http1Url}${GET_RUNTIME}?connect=v1&encoding=json&message=${encodeURIComponent("{}")}`);
    expect(response.status).toBe(200);
  });
});

describe("stream errors for a snapshot over the message limit", () => {
  for (const protocol of PROTOCOLS) {
    it(`carry the ErrorDetail over ${protocol} (a snapshot over the message limit)`, async () => {
      const clients = harness.connect(protocol);
      const worker = (await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId })).worker?.ref;
      await clients.interaction.sendInput({ worker, input: { text: "say a lot" } });
      await held.started;
      // The runtime bounds a run's in-flight output, so the snapshot grows by its queue: each run
      // is small, all of them together are over the limit.
      for (let i = 0; i < MAX_QUEUE_DEPTH; i++) {
        const requestId = `${protocol}-${i}`.padEnd(128, "r");
        await clients.interaction.sendInput({ worker, input: { text: "q" }, busyPolicy: BusyPolicy.ENQUEUE, requestId });
      }
      const { error, detail } = await expectError(async () => {
        for await (const _ of clients.observation.watchWorker({ worker })) void _;
      });
      expect(error.code).toBe(Code.ResourceExhausted);
      expect(detail?.reason).toBe(ErrorReason.LIMIT_EXCEEDED);
      expect(detail?.metadata["limit"]).toBe(String(MAX_MESSAGE_BYTES));
    });
  }
});

describe("stream errors raised after the handler, in the transport", () => {
  it("carry the ErrorDetail over Connect JSON when only the JSON form is over the message limit", async () => {
    // Control characters take 1 byte in protobuf and 6 in JSON ("\u0001"): the runtime's binary budget
    // lets this snapshot through, and the transport's writeMaxBytes refuses its JSON form.
    const escaped = holdOpen("\u0001".repeat(30_000));
    backend.enqueue(escaped.script);
    const sessionManager = new Http2SessionManager(harness.baseUrl);
    try {
      const transport = createConnectTransport({ baseUrl: harness.baseUrl, httpVersion: "2", sessionManager, useBinaryFormat: false });
      const clients = clientsFor(transport);
      const worker = (await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId })).worker?.ref;
      await clients.interaction.sendInput({ worker, input: { text: "escape a lot" } });
      await escaped.started;
      const { error, detail } = await expectError(async () => {
        for await (const _ of clients.observation.watchWorker({ worker })) void _;
      });
      expect(error.code).toBe(Code.ResourceExhausted);
      expect(detail?.reason).toBe(ErrorReason.LIMIT_EXCEEDED);
      expect(detail?.metadata["limit"]).toBe(String(MAX_MESSAGE_BYTES));
    } finally {
      escaped.release();
      sessionManager.abort();
    }
  });
});

describe("oversize requests", () => {
  const oversize = Buffer.alloc(16 * MAX_MESSAGE_BYTES, 0x61);

  it("are refused with RESOURCE_EXHAUSTED on an HTTP/2 session that keeps working", async () => {
    const kinds: [string, http2.OutgoingHttpHeaders, Buffer][] = [
      ["grpc", { "content-type": "application/grpc", te: "trailers" }, grpcFrame(oversize)],
      ["grpc-web", { "content-type": "application/grpc-web+proto" }, grpcFrame(oversize)],
      ["connect", { "content-type": "application/proto", "connect-protocol-version": "1" }, oversize],
    ];
    for (let round = 0; round < 3; round++) {
      for (const [kind, headers, body] of kinds) {
        const answer = await h2({ ":method": "POST", ":path": LIST_WORKERS, ...headers }, body);
        if (kind === "connect") {
          const json = JSON.parse(answer.body.toString("utf8")) as ConnectErrorJson;
          expect(json.code, kind).toBe("resource_exhausted");
          expect(connectReason(json), kind).toBe("ERROR_REASON_LIMIT_EXCEEDED");
        } else {
          const source = kind === "grpc" ? { ...answer.headers, ...answer.trailers } : grpcWebTrailers(answer.body);
          expect(grpcStatus(source), kind).toEqual({ code: Code.ResourceExhausted, reason: ErrorReason.LIMIT_EXCEEDED });
        }
        expect(session.closed || session.destroyed, `session after ${kind} round ${round}`).toBe(false);
      }
    }
    const ok = await h2(
      { ":method": "POST", ":path": GET_RUNTIME, "content-type": "application/json", "connect-protocol-version": "1" },
      Buffer.from("{}"),
    );
    expect(ok.status).toBe(200);
    expect(session.closed || session.destroyed).toBe(false);
  });

  it("are refused with RESOURCE_EXHAUSTED over HTTP/1.1 and the client's next request works", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const post = (path: string, body: Buffer): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const request = http.request(
          `${harness.http1Url}${path}`,
          {
            method: "POST",
            agent,
            headers: { "content-type": "application/json", "connect-protocol-version": "1", "content-length": body.length },
          },
          (response) => {
            let text = "";
            response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
            response.on("end", () => resolve({ status: response.statusCode ?? 0, body: text }));
            response.on("error", reject);
          },
        );
        request.on("error", reject);
        request.end(body);
      });
    try {
      for (let round = 0; round < 3; round++) {
        const refused = await post(LIST_WORKERS, oversize);
        const json = JSON.parse(refused.body) as ConnectErrorJson;
        expect(json.code).toBe("resource_exhausted");
        expect(connectReason(json)).toBe("ERROR_REASON_LIMIT_EXCEEDED");
        const next = await post(GET_RUNTIME, Buffer.from("{}"));
        expect(next.status).toBe(200);
      }
    } finally {
      agent.destroy();
    }
  });
});
