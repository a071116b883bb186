import { RunSchema, type Run } from "../../../gen/worker_runtime/v1/run_pb.js";
import { createMessageEncoder } from "../../runtime/index.js";
import { packFields, unpackFields } from "./snapshot-file.js";

/**
 * One record of a worker's runs log: a version of a run, with the fields
 * open needs (status, ids, the core's request fingerprint) ahead of the
 * encoded Run, so the run index is rebuilt without decoding runs.
 */
export interface RunRecord {
  status: number;
  runId: string;
  requestId: string;
  fingerprint: string;
  runBytes: Uint8Array;
}

/** toBinary's bytes, planned once (a run record is written on every change of a run). */
const encodeRun = createMessageEncoder(RunSchema);

/** Encodes a run version with its request fingerprint into a log record body. */
export function encodeRunRecord(run: Run, fingerprint: string): Buffer {
  return packFields([
    Uint8Array.of(run.status),
    Buffer.from(run.runId, "utf8"),
    Buffer.from(run.requestId, "utf8"),
    Buffer.from(fingerprint, "utf8"),
    encodeRun(run),
  ]);
}

const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Decodes a log record body; undefined if it is not a run record. */
export function decodeRunRecord(body: Uint8Array): RunRecord | undefined {
  const fields = unpackFields(body, 5);
  const [status, runId, requestId, fingerprint, runBytes] = fields ?? [];
  if (status?.length !== 1 || !runId || !requestId || !fingerprint || !runBytes) return undefined;
  try {
    return {
      status: status[0] ?? 0,
      runId: fromUtf8.decode(runId),
      requestId: fromUtf8.decode(requestId),
      fingerprint: fromUtf8.decode(fingerprint),
      runBytes,
    };
  } catch {
    return undefined;
  }
}
