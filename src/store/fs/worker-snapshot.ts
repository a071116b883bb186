import { fromBinary } from "@bufbuild/protobuf";
import { WorkerSchema } from "../../../gen/worker_runtime/v1/worker_pb.js";
import { createMessageEncoder, type WorkerRecord } from "../../runtime/index.js";
import { decodeSnapshot, encodeSnapshot, packFields, unpackFields } from "./snapshot-file.js";

/**
 * `worker.snapshot`: the WorkerRecord plus the worker's creation index, which
 * restores workers in creation order (directory listings have no order).
 */
export interface WorkerSnapshot {
  record: WorkerRecord;
  creationIndex: number;
}

const utf8 = new TextEncoder();
/** toBinary's bytes, planned once (a snapshot is written on every change of a worker). */
const encodeWorker = createMessageEncoder(WorkerSchema);
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Encodes a worker snapshot file. */
export function encodeWorkerSnapshot(snapshot: WorkerSnapshot): Buffer {
  const index = Buffer.allocUnsafe(8);
  index.writeBigUInt64BE(BigInt(snapshot.creationIndex), 0);
  return encodeSnapshot(
    packFields([
      index,
      encodeWorker(snapshot.record.worker),
      utf8.encode(snapshot.record.createRequestId),
      utf8.encode(snapshot.record.createFingerprint),
    ]),
  );
}

/** Decodes a worker snapshot file, or says why it cannot be used. */
export function decodeWorkerSnapshot(content: Buffer): WorkerSnapshot | { problem: string } {
  const decoded = decodeSnapshot(content);
  if ("problem" in decoded) return decoded;
  const fields = unpackFields(decoded.body, 4);
  const [index, worker, requestId, fingerprint] = fields ?? [];
  if (!index || index.length !== 8 || !worker || !requestId || !fingerprint) {
    return { problem: "malformed snapshot body" };
  }
  try {
    return {
      creationIndex: Number(Buffer.from(index).readBigUInt64BE(0)),
      record: {
        worker: fromBinary(WorkerSchema, worker),
        createRequestId: fromUtf8.decode(requestId),
        createFingerprint: fromUtf8.decode(fingerprint),
      },
    };
  } catch {
    return { problem: "snapshot body does not decode" };
  }
}
