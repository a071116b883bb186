import { create } from "@bufbuild/protobuf";
import { NoticeSchema, type Notice } from "../../gen/worker_runtime/v1/transcript_pb.js";

/**
 * Asked of the model after its stream was cut. Sent as a user message
 * because several compatible servers' chat templates refuse a system
 * message anywhere but first. It is recorded in the transcript as a
 * {@link SPLICE_NOTICE_CODE} notice, not as a user message: the user never
 * said it.
 */
export const CONTINUE_PROMPT =
  "Your previous reply was cut off by a connection failure. Continue it exactly where it stopped. " +
  "Do not repeat anything you already wrote and do not mention the interruption.";

/**
 * Code of the notice committed where a cut answer is spliced with its
 * continuation. A reader sees that the text after it was asked for with
 * {@link CONTINUE_PROMPT}; later turns' history replays the exchange as it
 * happened (the cut answer, the prompt, the continuation).
 */
export const SPLICE_NOTICE_CODE = "answer.continued";

/** The splice notice for an answer cut after `saidBytes` bytes. */
export function spliceNotice(saidBytes: number): Notice {
  return create(NoticeSchema, {
    code: SPLICE_NOTICE_CODE,
    message:
      `The provider's stream was cut after ${saidBytes} bytes of this answer; the text that follows was asked for ` +
      `with: "${CONTINUE_PROMPT}"`,
  });
}
