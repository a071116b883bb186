import { create } from "@bufbuild/protobuf";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { type TranscriptCut, TranscriptCutSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";

/**
 * What a user of a transcript cut short is told: where the readable part
 * ends, that the rest is not gone for good, and what to do. Plain words
 * with no file in them, as DAMAGED_WORKER_MESSAGE (store-errors.ts): API
 * clients and, through the Backend, browsers read it.
 */
function transcriptCutMessage(readableThroughSeq: bigint): string {
  const where = readableThroughSeq === 0n ? "from its first entry" : `after entry ${readableThroughSeq}`;
  return (
    `the worker's stored history is damaged ${where}: the later entries cannot be read, so this is not the whole ` +
    "conversation; the damaged history is kept for inspection (restore it from a backup, or delete the worker)"
  );
}

/**
 * The `cut` of a ReadTranscript answer, from where damage the store found
 * at open cut the worker's transcript short (`RestoredWorker.transcriptCut`),
 * so a slice that ends there (has_more false) is not taken for the whole
 * conversation. Every slice of such a worker carries it, whatever its
 * position: `last_seq` is the readable end, not the committed one, on all.
 */
export function transcriptCut(readableThroughSeq: bigint | undefined): TranscriptCut | undefined {
  if (readableThroughSeq === undefined) return undefined;
  return create(TranscriptCutSchema, {
    readableThroughSeq,
    reason: ErrorReason.WORKER_FAILED,
    message: transcriptCutMessage(readableThroughSeq),
  });
}
