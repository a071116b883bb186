import { create, toBinary } from "@bufbuild/protobuf";
import { RunSchema, RunStatus, RunStatusSchema, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { type TranscriptEntry, TranscriptEntrySchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { type ListRunsRequest, type ListRunsResponse, ListRunsResponseSchema } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import {
  type ReadTranscriptRequest,
  type ReadTranscriptResponse,
  ReadTranscriptResponseSchema,
} from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { invalidArgument } from "./errors.js";
import type { Limits } from "./limits.js";
import { ResponseBudget, responseBudgetBytes } from "./message-budget.js";
import type { PageTokens } from "./page-token.js";
import { readOfWorker } from "./pending-delete.js";
import type { RuntimeStore } from "./store.js";
import { typedStoreErrors } from "./store-errors.js";
import { transcriptCut } from "./transcript-cut.js";
import { checkEnum, resolvePageSize } from "./validation.js";
import type { WorkerSession } from "./worker-session.js";

/** Store reads are bounded: a filtered ListRuns page reads at most this many chunks. */
const MAX_RUN_READS_PER_PAGE = 20;

/**
 * One run of a worker, from memory or the store. Part-way through the
 * worker's delete the store may no longer have it: the answer is then the
 * delete's outcome (pending-delete.ts), not "no such run".
 */
export function getRun(session: WorkerSession, runId: string): Promise<Run> {
  return readOfWorker(session.events, () => typedStoreErrors(session.getRun(runId)));
}

/**
 * A worker's runs, newest first, paginated and filtered by status; a page
 * ends early when the next run would not fit the message limit. Runs
 * memory knows better (active, queued, unsaved) are shown as they are now.
 */
export async function listRuns(
  store: RuntimeStore,
  session: WorkerSession,
  request: ListRunsRequest,
  limits: Limits,
  pageTokens: PageTokens,
): Promise<ListRunsResponse> {
  const pageSize = resolvePageSize("page_size", request.pageSize, limits.defaultPageSize, limits.maxPageSize);
  checkEnum("status", request.status, RunStatusSchema);
  const filter = [session.workerId, request.status];
  const after = pageTokens.decode("page_token", "runs", filter, request.pageToken);
  if (typeof after === "string") throw invalidArgument("page_token", "is not a valid page token");
  let before = after;
  const runs: Run[] = [];
  const budget = new ResponseBudget(responseBudgetBytes(limits));
  let exhausted = false;
  let full = false;
  // Filtering may skip runs; read on in bounded chunks until the page is full (by count or bytes).
  for (let reads = 0; !full && runs.length < pageSize && reads < MAX_RUN_READS_PER_PAGE; reads++) {
    const chunk = await readOfWorker(session.events, () => typedStoreErrors(store.listRuns(session.workerId, before, pageSize)));
    if (chunk.length === 0) {
      exhausted = true;
      break;
    }
    for (const { ordinal, run } of chunk) {
      const current = session.liveRun(run.runId) ?? run;
      if (request.status === RunStatus.UNSPECIFIED || current.status === request.status) {
        // A run that does not fit starts the next page.
        if (!budget.take(toBinary(RunSchema, current).byteLength)) {
          full = true;
          break;
        }
        runs.push(current);
      }
      before = ordinal;
      if (runs.length === pageSize) break;
    }
    if (before === 1) {
      exhausted = true;
      break;
    }
  }
  return create(ListRunsResponseSchema, {
    runs,
    nextPageToken: !exhausted && before !== undefined ? pageTokens.encode("runs", filter, before) : "",
  });
}

/**
 * A bounded slice of a worker's transcript: forward after a seq, or
 * backward from a seq (default: the tail). Positions past the end are
 * clamped to it, so `has_more` and `last_seq` always agree with the slice.
 * A slice holds fewer than `limit` entries when more would not fit the
 * message limit (`has_more` then says so). A transcript that damage cut
 * short says where, on every slice (`cut`, transcript-cut.ts).
 */
export async function readTranscript(
  store: RuntimeStore,
  session: WorkerSession,
  request: ReadTranscriptRequest,
  limits: Limits,
): Promise<ReadTranscriptResponse> {
  const limit = request.limit === 0 ? limits.defaultTranscriptRead : Math.min(request.limit, limits.maxTranscriptRead);
  const lastSeq = session.events.lastTranscriptSeq;
  const position = request.position;
  let entries: TranscriptEntry[];
  let hasMore: boolean;
  // Bounded by bytes too: the entries nearest the position that fit one response.
  const budget = new ResponseBudget(responseBudgetBytes(limits));
  const fits = (entry: TranscriptEntry): boolean => budget.take(toBinary(TranscriptEntrySchema, entry).byteLength);
  if (position.case === "afterSeq") {
    const afterSeq = position.value < lastSeq ? position.value : lastSeq;
    const read = await readOfWorker(session.events, () =>
      typedStoreErrors(store.readTranscript(session.workerId, { kind: "after", afterSeq }, limit)),
    );
    const fitting = read.findIndex((entry) => !fits(entry));
    entries = fitting < 0 ? read : read.slice(0, fitting);
    hasMore = afterSeq + BigInt(entries.length) < lastSeq;
  } else {
    const beforeSeq = position.case === "beforeSeq" && position.value <= lastSeq ? position.value : lastSeq + 1n;
    const read = await readOfWorker(session.events, () =>
      typedStoreErrors(store.readTranscript(session.workerId, { kind: "before", beforeSeq }, limit)),
    );
    let first = read.length;
    while (first > 0 && fits(read[first - 1] as TranscriptEntry)) first--;
    entries = read.slice(first);
    hasMore = (entries[0]?.seq ?? 1n) > 1n;
  }
  const cut = transcriptCut(session.transcriptCut);
  return create(ReadTranscriptResponseSchema, { entries, hasMore, lastSeq, ...(cut ? { cut } : {}) });
}
