import { create } from "@bufbuild/protobuf";
import { RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { NoticeSchema, type Notice } from "../../gen/worker_runtime/v1/transcript_pb.js";
import type { RuntimeStore } from "./store.js";

/**
 * The notice code of a run the runtime's stop interrupted. Like a failed
 * run's `run.failed`, it tells a reader of the transcript alone (the CLI's
 * `transcript`, the console) that the run did not end by itself, and like
 * it, it is not part of the model's context (engine/conversation.ts).
 */
export const INTERRUPTED_NOTICE_CODE = "run.interrupted";

/** Who interrupted the run: a restart after a stop that left it unfinished (kill -9), or a shutdown's drain. */
export type InterruptedBy = "restart" | "shutdown";

/**
 * What each says. A drain cancels the run, and the engine commits what the
 * run had written so far; a stop that left the run unfinished (a crash)
 * committed nothing more, and the text it was still streaming is gone.
 */
const MESSAGES: Record<InterruptedBy, string> = {
  restart: "the runtime stopped before this run ended; any reply it was still writing was not kept",
  shutdown: "the runtime shut down before this run ended; what the run had written so far is kept",
};

/** The notice of a run `by` interrupted. */
export function interruptedNotice(by: InterruptedBy): Notice {
  return create(NoticeSchema, { code: INTERRUPTED_NOTICE_CODE, message: MESSAGES[by] });
}

/**
 * Whether an ended run's transcript is to tell its interruption: it was
 * interrupted after it started. A run interrupted while queued has nothing
 * in the transcript (its input is committed as it starts), so a notice
 * there would name a run the transcript never shows; ListRuns shows it
 * INTERRUPTED.
 */
export function tellsInterruption(run: Run): boolean {
  return run.status === RunStatus.INTERRUPTED && run.startedAt !== undefined;
}

/** How many entries a restart reads at a time as it searches back for a notice already written. */
const NOTICE_SEARCH_PAGE = 256;

/**
 * Whether the transcript already tells run `runId`'s interruption: the
 * runtime stopped again after its notice was durable but before its
 * INTERRUPTED record was (the record is written after the notice, so a
 * run stored ended always has it). The notice is the run's last entry
 * (runs are single-flight: its other entries come before it, and only
 * later runs' entries after it), so the answer is whether the run's last
 * entry is the notice, searched from the end back to it, page by page.
 * Usually it is in the first page; a fixed depth was not enough, as a runs
 * log that kept failing let later runs commit any number of entries after
 * the notice. Only a run with no entry at all (a transcript cut before it)
 * costs a read of the whole transcript, once per start. A read that fails
 * answers false: the notice is written (again) rather than lost.
 */
export async function interruptedNoticeWritten(
  store: Pick<RuntimeStore, "readTranscript">,
  workerId: string,
  lastTranscriptSeq: bigint,
  runId: string,
): Promise<boolean> {
  try {
    for (let beforeSeq = lastTranscriptSeq + 1n; beforeSeq > 1n; ) {
      const page = await store.readTranscript(workerId, { kind: "before", beforeSeq }, NOTICE_SEARCH_PAGE);
      const last = page.findLast((entry) => entry.runId === runId);
      if (last) return last.content.case === "notice" && last.content.value.code === INTERRUPTED_NOTICE_CODE;
      const first = page[0];
      if (first === undefined || first.seq >= beforeSeq) return false;
      beforeSeq = first.seq;
    }
    return false;
  } catch {
    return false;
  }
}
