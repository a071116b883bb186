import { create } from "@bufbuild/protobuf";
import * as path from "node:path";
import { WorkerRefSchema } from "../../../gen/worker_runtime/v1/common_pb.js";
import { DiagnosticSeverity } from "../../../gen/worker_runtime/v1/runtime_pb.js";
import { WorkerSchema, WorkerStatus } from "../../../gen/worker_runtime/v1/worker_pb.js";
import type { RestoredWorker, StoreDiagnostic } from "../../runtime/index.js";
import { type Disk, errorCode } from "./disk.js";
import type { FileStoreStats } from "./file-store-stats.js";
import { WORKER_CREATED, WORKER_SNAPSHOT, workerDir } from "./layout.js";
import { readSnapshotFile } from "./snapshot-file.js";
import type { RestoredRuns } from "./run-log.js";
import { WorkerFiles, type LogSettings } from "./worker-files.js";
import { decodeWorkerSnapshot, type WorkerSnapshot } from "./worker-snapshot.js";

/** One worker as found on disk. */
export interface WorkerRestore {
  files: WorkerFiles;
  restored: RestoredWorker;
  diagnostics: StoreDiagnostic[];
}

/**
 * Opens one worker's directory. Nothing here throws for damaged data: a
 * missing or unreadable snapshot, or a log damaged in the middle, yields a
 * quarantined worker and an ERROR diagnostic naming the file (relative to
 * the data dir; its `hostDetail`, for the operator's log, names the absolute
 * file), so every other worker is still served.
 */
export async function restoreWorker(
  workerId: string,
  runtimeId: string,
  disk: Disk,
  settings: LogSettings,
  stats: FileStoreStats,
): Promise<WorkerRestore> {
  const diagnostics: StoreDiagnostic[] = [];
  /** What is damaged: files relative to the data dir, and the same with absolute files. */
  const problems: string[] = [];
  const hostProblems: string[] = [];
  const damaged = (rel: string, problem: string): void => {
    problems.push(`${rel}: ${problem}`);
    hostProblems.push(`${disk.abs(rel)}: ${problem}`);
  };
  const snapshotRel = path.join(workerDir(workerId), WORKER_SNAPSHOT);
  const snapshot = await readSnapshot(disk, snapshotRel, stats);
  if ("problem" in snapshot) damaged(snapshotRel, snapshot.problem);
  const known = "record" in snapshot ? snapshot : await asCreated(workerId, runtimeId, disk, stats);
  const files = new WorkerFiles(workerId, known.record, known.creationIndex, disk, settings, stats);

  for (const log of files.logs) {
    try {
      for (const problem of await log.open()) {
        if (problem.kind === "torn") {
          diagnostics.push({
            severity: DiagnosticSeverity.WARNING,
            code: "store.torn_tail_truncated",
            message: `${problem.file}: an unfinished write at the end of the log was truncated (${problem.detail})`,
            workerId,
            hostDetail: `${disk.abs(problem.file)}: an unfinished write at the end of the log was truncated (${problem.detail})`,
          });
        } else {
          damaged(problem.file, problem.detail);
        }
      }
    } catch (error) {
      problems.push(`${log.damaged ?? "a log"} could not be opened (${errorCode(error)})`);
      hostProblems.push(
        `a log of ${disk.abs(files.dir)} could not be opened (${error instanceof Error ? error.message : errorCode(error)})`,
      );
    }
  }
  let runs: RestoredRuns = { runCount: 0, unfinishedRuns: [], recentRequestIds: [] };
  try {
    const opened = await files.runs.open();
    runs = opened.runs;
    if (opened.checkpointProblem !== undefined) {
      diagnostics.push({
        severity: DiagnosticSeverity.WARNING,
        code: "store.run_index_rebuilt",
        message: `${opened.checkpointProblem}; the run index was rebuilt from the whole run log instead (the next checkpoint replaces the file)`,
        workerId,
      });
    }
  } catch (error) {
    damaged(path.join(files.dir, "runs"), error instanceof Error ? error.message : "unreadable");
  }

  const quarantined = problems.length > 0 ? `stored state of worker ${workerId} is damaged: ${problems.join("; ")}` : undefined;
  if (quarantined) {
    const advice = "The worker is served as FAILED; restore its directory from a backup or delete the worker.";
    diagnostics.push({
      severity: DiagnosticSeverity.ERROR,
      code: "store.worker_quarantined",
      message: `${quarantined}. ${advice}`,
      workerId,
      hostDetail: `stored state of worker ${workerId} is damaged: ${hostProblems.join("; ")}. ${advice}`,
    });
  }
  return {
    files,
    diagnostics,
    restored: {
      record: known.record,
      lastEventSeq: files.events.lastSeq,
      lastTranscriptSeq: files.transcript.lastSeq,
      ...(files.transcript.readableThroughSeq !== undefined ? { transcriptCut: files.transcript.readableThroughSeq } : {}),
      ...runs,
      ...(quarantined ? { quarantined } : {}),
    },
  };
}

/**
 * A worker whose snapshot cannot be read, as it was created (FAILED): its
 * creation record keeps what its users chose and its place in creation
 * order. Without one (data dirs from before it, or it is damaged too) only
 * its id is known, and it is listed first.
 */
async function asCreated(workerId: string, runtimeId: string, disk: Disk, stats: FileStoreStats): Promise<WorkerSnapshot> {
  const created = await readSnapshot(disk, path.join(workerDir(workerId), WORKER_CREATED), stats);
  if ("record" in created && created.record.worker.ref?.workerId === workerId) {
    created.record.worker.status = WorkerStatus.FAILED;
    return created;
  }
  const worker = create(WorkerSchema, { ref: create(WorkerRefSchema, { runtimeId, workerId }), status: WorkerStatus.FAILED });
  return { record: { worker, createRequestId: "", createFingerprint: "" }, creationIndex: 0 };
}

async function readSnapshot(disk: Disk, rel: string, stats: FileStoreStats) {
  let read: Awaited<ReturnType<typeof readSnapshotFile>>;
  try {
    read = await readSnapshotFile(disk.abs(rel));
  } catch (error) {
    return { problem: errorCode(error) === "ENOENT" ? "snapshot is missing" : `snapshot is unreadable (${errorCode(error)})` };
  }
  if ("problem" in read) return read;
  stats.bytesRead += read.content.length;
  return decodeWorkerSnapshot(read.content);
}
