import { create } from "@bufbuild/protobuf";
import { UserMessageSchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import type { RunSink } from "./execution-backend.js";

/**
 * A fresh run's input, committed while its execution starts rather than
 * before it: the backend can read the history and send its model request
 * during the write, so a run's first token no longer waits for it (on the
 * file store, the write also waits for the run's RUNNING record ahead of it
 * in the worker's write queue: two or three fsyncs).
 *
 * The transcript stays what it was: the entry has its seq from the start,
 * and everything the run makes durable after it — the entries it commits,
 * an approval wait — waits for it through {@link InputCommit.gate}; watchers
 * get the run's live deltas after it too (they queue behind pending durable
 * events). A failed write calls `onFailure` (the execution is stopped) and
 * rejects every gated write, so no entry of the run is ever durable without
 * its input.
 */
export class InputCommit {
  /** Transcript seq of the input entry. */
  readonly seq: bigint;
  /** Resolves once the input is durable; rejects with the store's error. */
  readonly durable: Promise<void>;
  /** Set when the write failed. */
  failed = false;

  constructor(sink: RunSink, text: string, assignedTranscriptSeq: () => bigint, onFailure: (error: unknown) => void) {
    // The entry's seq is assigned when the commit is called, before the write.
    const committed = sink.commit({ case: "userMessage", value: create(UserMessageSchema, { text }) });
    this.seq = assignedTranscriptSeq();
    this.durable = committed.then(() => undefined);
    this.durable.catch((error: unknown) => {
      this.failed = true;
      onFailure(error);
    });
  }

  /** `sink` with its durable writes after the input's. */
  gate(sink: RunSink): RunSink {
    const after = this.durable;
    return {
      textDelta: (blockId, text) => sink.textDelta(blockId, text),
      reasoningDelta: (blockId, text) => sink.reasoningDelta(blockId, text),
      toolCallDelta: (blockId, delta) => sink.toolCallDelta(blockId, delta),
      discardBlock: (blockId) => sink.discardBlock(blockId),
      addUsage: (usage) => sink.addUsage(usage),
      turn: () => sink.turn(),
      retry: (retry) => sink.retry(retry),
      commit: async (content, blockId) => {
        await after;
        return sink.commit(content, blockId);
      },
      requestApproval: async (call, signal) => {
        await after;
        return sink.requestApproval(call, signal);
      },
    };
  }
}
