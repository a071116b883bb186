import { clone, fromBinary, toBinary } from "@bufbuild/protobuf";
import { RunSchema, RunStatus, type Run } from "../../../gen/worker_runtime/v1/run_pb.js";
import {
  DEFAULT_LIMITS,
  RequestIdMemory,
  StoreWriteError,
  type PutRunInit,
  type RestoredWorker,
  type StoredRun,
} from "../../runtime/index.js";
import type { LogRecord } from "./record-frame.js";
import type { SegmentedLog } from "./segmented-log.js";
import { packFields, unpackFields } from "./snapshot-file.js";

/** Request ids handed back at open for SendInput idempotency: as many as the core keeps by default. */
const RECENT_REQUEST_IDS = DEFAULT_LIMITS.requestIdMemory;
/**
 * Bytes of run records read at a time while rebuilding the index at open:
 * workers open 32 at a time, and 512 run versions with inputs of the
 * default limit (256 KiB) would be 128 MiB in one read.
 */
const OPEN_READ_BYTES = 1024 * 1024;
const UNFINISHED = new Set([RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL]);

/** The part of a run record that open needs without decoding the Run. */
interface RunHeader {
  status: number;
  runId: string;
  requestId: string;
  fingerprint: string;
  runBytes: Uint8Array;
}

/** What open found in the runs log. */
export type RestoredRuns = Pick<RestoredWorker, "runCount" | "unfinishedRuns" | "recentRequestIds">;

/**
 * A worker's runs as an append-only log of run versions (latest wins). The
 * ordinal of a run is the order in which its first version became durable,
 * so ordinals need no separate bookkeeping and can never have gaps. An
 * in-memory index (run id → ordinal, ordinal → record of its latest version)
 * is built at open and makes `getRun`/`listRuns` O(1) per run returned.
 * Reads see a version as soon as `put` is called, before it is durable, as
 * with the memory store: the runtime shows a run's end (worker IDLE) at
 * once, and a GetRun after that must not still say RUNNING.
 */
export class RunLog {
  private readonly byId = new Map<string, number>();
  /** Log seq of the latest version of each run, by ordinal - 1. */
  private readonly latest: number[] = [];
  /** Versions being written, by run id: what reads return until the write settles. */
  private readonly pending = new Map<string, Run>();

  constructor(private readonly log: SegmentedLog) {}

  /** Called by the log for every durable batch, in file order. */
  readonly onDurable = (records: readonly LogRecord[]): void => {
    for (const record of records) {
      const header = decodeHeader(record.body);
      if (header) this.index(header.runId, Number(record.seq));
    }
  };

  /** Rebuilds the index from the (already opened) log. */
  async open(): Promise<RestoredRuns> {
    const unfinished = new Map<string, Uint8Array>();
    const requests = new RequestIdMemory<{ requestId: string; runId: string; fingerprint: string }>(RECENT_REQUEST_IDS);
    for (let seq = this.log.earliestSeq; seq <= this.log.lastSeq; ) {
      const records = await this.log.read(seq, 512, OPEN_READ_BYTES);
      if (records.length === 0) break;
      for (const record of records) {
        const header = decodeHeader(record.body);
        if (!header) throw new Error(`run record ${record.seq} is malformed`);
        this.index(header.runId, Number(record.seq));
        if (UNFINISHED.has(header.status)) unfinished.set(header.runId, header.runBytes);
        else unfinished.delete(header.runId);
        if (header.requestId !== "") {
          const { requestId, runId, fingerprint } = header;
          requests.remember(requestId, { requestId, runId, fingerprint });
        }
        seq = record.seq + 1n;
      }
    }
    return {
      runCount: this.latest.length,
      unfinishedRuns: [...unfinished.values()].map((bytes) => fromBinary(RunSchema, bytes)),
      recentRequestIds: requests.values(),
    };
  }

  /** Number of runs durably stored. */
  get count(): number {
    return this.latest.length;
  }

  /** Appends a new version of a run with the core's request fingerprint; durable on resolve. */
  async put(run: Run, { fingerprint }: PutRunInit): Promise<void> {
    const body = packFields([
      Uint8Array.of(run.status),
      Buffer.from(run.runId, "utf8"),
      Buffer.from(run.requestId, "utf8"),
      Buffer.from(fingerprint, "utf8"),
      toBinary(RunSchema, run),
    ]);
    const version = clone(RunSchema, run);
    this.pending.set(run.runId, version);
    try {
      await this.log.append([{ seq: this.log.nextSeq, body }]);
    } catch (error) {
      // Seq numbers of this log are internal, so every failure is a write failure.
      if (error instanceof StoreWriteError) throw error;
      throw new StoreWriteError("run was not stored: an earlier write failed", { cause: error });
    } finally {
      // Durable (and indexed) or failed: either way the log answers from now on.
      if (this.pending.get(run.runId) === version) this.pending.delete(run.runId);
    }
  }

  async get(runId: string): Promise<Run | undefined> {
    const pending = this.pending.get(runId);
    if (pending) return clone(RunSchema, pending);
    const ordinal = this.byId.get(runId);
    return ordinal === undefined ? undefined : (await this.readOrdinal(ordinal))?.run;
  }

  async list(beforeOrdinal: number | undefined, limit: number): Promise<StoredRun[]> {
    const end = Math.min(beforeOrdinal === undefined ? this.latest.length : beforeOrdinal - 1, this.latest.length);
    const page: StoredRun[] = [];
    for (let ordinal = end; ordinal >= 1 && page.length < limit; ordinal--) {
      const stored = await this.readOrdinal(ordinal);
      if (stored) page.push(stored);
    }
    return page;
  }

  private index(runId: string, seq: number): void {
    const ordinal = this.byId.get(runId);
    if (ordinal === undefined) {
      this.latest.push(seq);
      this.byId.set(runId, this.latest.length);
    } else {
      this.latest[ordinal - 1] = seq;
    }
  }

  private async readOrdinal(ordinal: number): Promise<StoredRun | undefined> {
    for (;;) {
      const seq = this.latest[ordinal - 1];
      if (seq === undefined) return undefined;
      const [record] = await this.log.read(BigInt(seq), 1);
      // A newer version became durable (and left `pending`) during the read: read that one.
      if (this.latest[ordinal - 1] !== seq) continue;
      const header = record && decodeHeader(record.body);
      if (!header) return undefined;
      const pending = this.pending.get(header.runId);
      return { ordinal, run: pending ? clone(RunSchema, pending) : fromBinary(RunSchema, header.runBytes) };
    }
  }
}

const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

function decodeHeader(body: Uint8Array): RunHeader | undefined {
  const fields = unpackFields(body, 5);
  const [status, runId, requestId, fingerprint, runBytes] = fields ?? [];
  if (!status || status.length !== 1 || !runId || !requestId || !fingerprint || !runBytes) return undefined;
  return {
    status: status[0] ?? 0,
    runId: fromUtf8.decode(runId),
    requestId: fromUtf8.decode(requestId),
    fingerprint: fromUtf8.decode(fingerprint),
    runBytes,
  };
}
