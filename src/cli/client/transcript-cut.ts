import { toJson } from "@bufbuild/protobuf";
import { ErrorReason } from "../../../gen/worker_runtime/v1/errors_pb.js";
import { type TranscriptCut, TranscriptCutSchema } from "../../../gen/worker_runtime/v1/worker_observation_pb.js";
import { ExitCode, type ExitCodeValue } from "./exit-codes.js";
import type { Output } from "./output.js";
import { enumName } from "./format.js";

/**
 * Says, after the entries, that the transcript read ends at damage
 * (ReadTranscript's `cut`), and answers the exit code: the readable part
 * printed alone, with exit 0, read as the whole conversation. Text: one
 * line on stderr naming where it ends, the runtime's words (what to do)
 * and the reason. JSON: a last stdout line `{"cut": ...}` (protobuf JSON),
 * so a script reading entries meets it in the same stream. Either way
 * exit {@link ExitCode.TRANSCRIPT_CUT}.
 */
export function reportTranscriptCut(output: Output, cut: TranscriptCut | undefined): ExitCodeValue {
  if (cut === undefined) return ExitCode.OK;
  if (output.json) {
    output.jsonLine({ cut: toJson(TranscriptCutSchema, cut) });
  } else {
    const where =
      cut.readableThroughSeq === 0n
        ? "no entry of the transcript can be read"
        : `the transcript ends at entry ${cut.readableThroughSeq}, cut short`;
    const reason = enumName(ErrorReason, cut.reason);
    output.note(`worker-runtime: ${where}: ${cut.message} (reason: ${reason})`);
  }
  return ExitCode.TRANSCRIPT_CUT;
}
