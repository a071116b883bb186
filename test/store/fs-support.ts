import { create } from "@bufbuild/protobuf";
import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { WorkerRefSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunSchema, type RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { TranscriptEntrySchema, UserMessageSchema, type TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { InputSchema, WorkerSchema, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { PutRunInit, StoredEvent, WorkerRecord } from "../../src/runtime/store.js";
import { createFileStore, type FileStore, type FileStoreOptions } from "../../src/store/fs/index.js";

/** A temp data dir per test, removed afterwards. */
export async function tempDataDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "wr-fs-store-"));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Opens a file store on `dir` with a fixed runtime id. */
export async function openStore(
  dir: string,
  options: Omit<FileStoreOptions, "dataDir"> = {},
  runtimeId?: string,
): Promise<{ store: FileStore; opened: Awaited<ReturnType<FileStore["open"]>> }> {
  const store = createFileStore({ dataDir: dir, ...options });
  const opened = await store.open({ ...(runtimeId ? { runtimeId } : {}), generateRuntimeId: () => "rt-generated" });
  return { store, opened };
}

export function workerRecord(workerId: string, displayName = workerId): WorkerRecord {
  return {
    worker: create(WorkerSchema, {
      ref: create(WorkerRefSchema, { runtimeId: "rt-generated", workerId }),
      displayName,
      status: WorkerStatus.IDLE,
    }),
    createRequestId: `req-${workerId}`,
    createFingerprint: `fp-${workerId}`,
  };
}

export function entry(seq: number | bigint, text = `message ${seq}`): TranscriptEntry {
  return create(TranscriptEntrySchema, {
    seq: BigInt(seq),
    runId: "run-1",
    content: { case: "userMessage", value: create(UserMessageSchema, { text }) },
  });
}

export function entries(from: number, to: number, text?: (seq: number) => string): TranscriptEntry[] {
  const list: TranscriptEntry[] = [];
  for (let seq = from; seq <= to; seq++) list.push(entry(seq, text?.(seq)));
  return list;
}

export function event(seq: number | bigint): StoredEvent {
  return { seq: BigInt(seq), bytes: Buffer.from(`event-${seq}`) };
}

export function events(from: number, to: number): StoredEvent[] {
  const list: StoredEvent[] = [];
  for (let seq = from; seq <= to; seq++) list.push(event(seq));
  return list;
}

/** The putRun init of a run without a request id. */
export const NO_REQUEST: PutRunInit = { fingerprint: "" };

export function run(runId: string, status: RunStatus, requestId = "", text = `input of ${runId}`): Run {
  return create(RunSchema, { runId, status, requestId, input: create(InputSchema, { text }) });
}

export function eventText(e: StoredEvent): string {
  return Buffer.from(e.bytes).toString();
}

export function entryText(e: TranscriptEntry): string {
  return e.content.case === "userMessage" ? e.content.value.text : "";
}
