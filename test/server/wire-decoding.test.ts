import { create, fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { http2Exchange, type RawAnswer } from "../support/http2-exchange.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { startHarness, type Harness } from "../support/harness.js";
import { grpcFrame } from "../support/raw-http2.js";

/**
 * Bad input that only exists on the wire, before any field check runs:
 * JSON that proto3 JSON refuses (unknown fields, wrong types, numbers out
 * of range or fractional, 64-bit integers in quotes and out of range) and
 * binary strings that are not UTF-8. Each is INVALID_ARGUMENT with our
 * ErrorDetail in every protocol that carries it — Connect JSON (HTTP/2 and
 * HTTP/1.1), gRPC-Web JSON and gRPC JSON; Connect, gRPC-Web and gRPC binary
 * — and the valid spellings (an int64 as a string, an int32 as a string)
 * are accepted.
 */

const LIST_WORKERS = "/worker_runtime.v1.WorkerCatalog/ListWorkers";
const READ_TRANSCRIPT = "/worker_runtime.v1.WorkerObservation/ReadTranscript";

let harness: Harness;
let session: http2.ClientHttp2Session;
let runtimeId: string;
let workerId: string;

beforeAll(async () => {
  harness = await startHarness({});
  runtimeId = harness.runtime.runtimeId;
  const created = await harness.runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId }));
  workerId = created.worker?.ref?.workerId ?? "";
  session = http2.connect(harness.baseUrl);
});

afterAll(async () => {
  session?.destroy();
  await harness?.close();
});

/** What a call answered: success, or the code and our ErrorDetail's reason. */
interface Outcome {
  ok: boolean;
  code?: number | undefined;
  reason?: ErrorReason | undefined;
}

type Transport = "connect-h2" | "connect-http1" | "grpc-web-h2" | "grpc";

/** Sends one unary request body as `encoding` over `transport`, raw, and reads the outcome. */
async function send(transport: Transport, encoding: "json" | "proto", path: string, message: Buffer): Promise<Outcome> {
  if (transport === "connect-http1") {
    const response = await fetch(`${harness.http1Url}${path}`, {
      method: "POST",
      headers: { "content-type": `application/${encoding}`, "connect-protocol-version": "1" },
      body: message,
    });
    const body = Buffer.from(await response.arrayBuffer());
    return response.ok ? { ok: true } : connectOutcome(body);
  }
  const contentType =
    transport === "connect-h2"
      ? `application/${encoding}`
      : transport === "grpc-web-h2"
        ? `application/grpc-web+${encoding}`
        : `application/grpc+${encoding}`;
  const framed = transport === "connect-h2" ? message : grpcFrame(message);
  const answer = await h2({ ":method": "POST", ":path": path, "content-type": contentType, te: "trailers" }, framed);
  if (transport === "connect-h2") return answer.status === 200 ? { ok: true } : connectOutcome(answer.body);
  const status = transport === "grpc-web-h2" ? grpcWebTrailers(answer.body) : { ...answer.headers, ...answer.trailers };
  return grpcOutcome(status);
}

function h2(headers: http2.OutgoingHttpHeaders, body: Buffer): Promise<RawAnswer> {
  return http2Exchange(session, headers, body);
}

function connectOutcome(body: Buffer): Outcome {
  const json = JSON.parse(body.toString("utf8")) as { code?: string; details?: { type: string; value: string }[] };
  const detail = json.details?.find((d) => d.type === "worker_runtime.v1.ErrorDetail");
  return {
    ok: false,
    code: json.code === "invalid_argument" ? Code.InvalidArgument : -1,
    reason: detail ? fromBinary(ErrorDetailSchema, Buffer.from(detail.value, "base64")).reason : undefined,
  };
}

function grpcOutcome(status: Record<string, string>): Outcome {
  const code = Number(status["grpc-status"]);
  if (code === 0) return { ok: true };
  const bin = status["grpc-status-details-bin"];
  const details = bin ? fromBinary(StatusSchema, Buffer.from(bin, "base64")).details : [];
  const detail = details.find((any) => any.typeUrl.endsWith("worker_runtime.v1.ErrorDetail"));
  return { ok: false, code, reason: detail ? fromBinary(ErrorDetailSchema, detail.value).reason : undefined };
}

/** The trailers of a gRPC-Web body (its last envelope, flagged 0x80). */
function grpcWebTrailers(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (let offset = 0; offset + 5 <= body.length; ) {
    const length = body.readUInt32BE(offset + 1);
    if ((body.readUInt8(offset) & 0x80) !== 0) {
      for (const line of body
        .subarray(offset + 5, offset + 5 + length)
        .toString("utf8")
        .split("\r\n")) {
        const colon = line.indexOf(":");
        if (colon > 0) out[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
    }
    offset += 5 + length;
  }
  return out;
}

const REFUSED: Outcome = { ok: false, code: Code.InvalidArgument, reason: ErrorReason.INVALID_ARGUMENT };
const JSON_TRANSPORTS: readonly Transport[] = ["connect-h2", "connect-http1", "grpc-web-h2", "grpc"];
const BINARY_TRANSPORTS: readonly Transport[] = ["connect-h2", "connect-http1", "grpc-web-h2", "grpc"];

describe.each(JSON_TRANSPORTS)("proto3 JSON over %s", (transport) => {
  const json = (path: string, value: unknown): Promise<Outcome> =>
    send(transport, "json", path, Buffer.from(typeof value === "string" ? value : JSON.stringify(value)));
  const worker = () => ({ runtimeId, workerId });

  it("refuses an unknown field rather than dropping it", async () => {
    expect(await json(LIST_WORKERS, { runtimeId, pageSizee: 5 })).toEqual(REFUSED);
    expect(await json(READ_TRANSCRIPT, { worker: { ...worker(), workerID: "w" } })).toEqual(REFUSED);
  });

  it("refuses a value of the wrong type", async () => {
    const cases: unknown[] = [
      { runtimeId: 5 },
      { runtimeId, pageSize: "many" },
      { runtimeId, pageSize: true },
      { runtimeId, statuses: "WORKER_STATUS_IDLE" },
      { runtimeId, labelSelector: { team: 1 } },
      { runtimeId, labelSelector: ["team"] },
    ];
    for (const value of cases) expect(await json(LIST_WORKERS, value), JSON.stringify(value)).toEqual(REFUSED);
  });

  it("refuses numbers out of range or fractional, in int32, uint32 and uint64 fields", async () => {
    const listCases: unknown[] = [
      { runtimeId, pageSize: 2147483648 },
      { runtimeId, pageSize: -2147483649 },
      { runtimeId, pageSize: 1.5 },
      { runtimeId, pageSize: "1e400" },
    ];
    for (const value of listCases) expect(await json(LIST_WORKERS, value), JSON.stringify(value)).toEqual(REFUSED);
    const readCases: unknown[] = [
      { worker: worker(), limit: -1 },
      { worker: worker(), limit: 4294967296 },
      { worker: worker(), afterSeq: "18446744073709551616" },
      { worker: worker(), afterSeq: "-1" },
      { worker: worker(), afterSeq: "12abc" },
      { worker: worker(), afterSeq: 1.5 },
    ];
    for (const value of readCases) expect(await json(READ_TRANSCRIPT, value), JSON.stringify(value)).toEqual(REFUSED);
  });

  it("refuses a string holding a lone UTF-16 surrogate, which JSON can spell but UTF-8 cannot hold", async () => {
    expect(await json(LIST_WORKERS, `{"runtimeId": "${runtimeId}", "labelSelector": {"team": "a\\ud800b"}}`)).toEqual(REFUSED);
    expect(await json(LIST_WORKERS, `{"runtimeId": "${runtimeId}", "labelSelector": {"team": "a\\ud83d\\ude00b"}}`)).toEqual({ ok: true });
  });

  it("refuses both members of a oneof", async () => {
    expect(await json(READ_TRANSCRIPT, { worker: worker(), afterSeq: "1", beforeSeq: "2" })).toEqual(REFUSED);
  });

  it("accepts 64-bit integers as strings (the proto3 JSON form) and 32-bit ones as strings or numbers", async () => {
    expect(await json(READ_TRANSCRIPT, { worker: worker(), afterSeq: "18446744073709551615" })).toEqual({ ok: true });
    expect(await json(READ_TRANSCRIPT, { worker: worker(), beforeSeq: 3, limit: "10" })).toEqual({ ok: true });
    expect(await json(LIST_WORKERS, { runtimeId, pageSize: "7" })).toEqual({ ok: true });
  });
});

describe.each(BINARY_TRANSPORTS)("binary protobuf over %s", (transport) => {
  it("refuses a string field that is not UTF-8 with INVALID_ARGUMENT, never a replacement character", async () => {
    // ListWorkersRequest.runtime_id (field 1, length-delimited): "a", 0xff, "b".
    const message = Buffer.from([0x0a, 0x03, 0x61, 0xff, 0x62]);
    expect(await send(transport, "proto", LIST_WORKERS, message)).toEqual(REFUSED);
    // A label selector key (map field 5) that is not UTF-8.
    const entry = Buffer.from([0x0a, 0x02, 0xc3, 0x28, 0x12, 0x01, 0x76]);
    const withLabel = Buffer.concat([
      Buffer.from([0x0a, runtimeId.length]),
      Buffer.from(runtimeId),
      Buffer.from([0x2a, entry.length]),
      entry,
    ]);
    expect(await send(transport, "proto", LIST_WORKERS, withLabel)).toEqual(REFUSED);
  });
});
