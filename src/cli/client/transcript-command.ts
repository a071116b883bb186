import type { TranscriptEntry } from "../../../gen/worker_runtime/v1/transcript_pb.js";
import type { TranscriptCut } from "../../../gen/worker_runtime/v1/worker_observation_pb.js";
import { CommandLineError } from "./command-line-error.js";
import { expectPositionals, parseCommand, printHelp, withContext, type CommandContext } from "./command-context.js";
import { EventPrinter } from "./event-printer.js";
import type { ExitCodeValue } from "./exit-codes.js";
import { reportTranscriptCut } from "./transcript-cut.js";
import { TranscriptPrinter } from "./transcript-printer.js";

const TRANSCRIPT_USAGE = `usage: worker-runtime transcript WORKER [--tail N | --after SEQ]
  The worker's committed transcript, oldest first, read in bounded pages.
  --tail N     only the last N entries
  --after SEQ  only entries after sequence number SEQ (default: from the start)
  A run that was cancelled or interrupted gets a line [stopped: cancelled] (or interrupted)
  after its last entry shown, so a partial answer does not read as a complete one
  (--output json: "stopped" on that entry).
  A worker whose stored history is damaged prints what can be read, then a line on stderr
  saying where it is cut and what to do, and exits 10 (--output json: a last line {"cut": ...}).`;

/** The largest seq (a uint64). */
const MAX_SEQ = 2n ** 64n - 1n;
/** Past any real seq: ReadTranscript clamps before_seq to the tail. */
const TAIL_POSITION = MAX_SEQ;
/** Entries per request; the runtime clamps to its max_transcript_read. */
const PAGE = 500;

/** `transcript`. */
export async function transcript(argv: string[]): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, { tail: { type: "string" }, after: { type: "string" } });
  if (values.help) return printHelp(TRANSCRIPT_USAGE);
  expectPositionals(positionals, 1, 1, TRANSCRIPT_USAGE);
  if (values.tail !== undefined && values.after !== undefined) throw new CommandLineError("--tail and --after exclude each other");
  const tail = values.tail === undefined ? undefined : Number(wholeNumber("--tail", values.tail, BigInt(Number.MAX_SAFE_INTEGER)));
  const after = values.after === undefined ? 0n : wholeNumber("--after", values.after, MAX_SEQ);
  const workerId = positionals[0] ?? "";
  return withContext(values, { after_seq: "--after", before_seq: "--tail", limit: "--tail" }, async (context) => {
    const printer = new EventPrinter(context.output, workerId, {
      userMessages: true,
      runStates: false,
      workerStates: false,
      endErrors: false,
    });
    const shown = new TranscriptPrinter(context, await context.workerRef(workerId), printer);
    let cut: TranscriptCut | undefined;
    if (tail !== undefined) {
      const read = await readTail(context, workerId, tail);
      cut = read.cut;
      await shown.print(read.entries);
    } else {
      cut = await readForward(context, workerId, after, (entries) => shown.print(entries));
    }
    await shown.finish();
    return reportTranscriptCut(context.output, cut);
  });
}

/**
 * A whole number up to `max`, read as a bigint so that a sequence number
 * past 2^53 keeps its digits and one past a uint64 is refused here rather
 * than failing to encode.
 */
function wholeNumber(flag: string, text: string, max: bigint): bigint {
  if (!/^\d+$/.test(text)) throw new CommandLineError(`${flag} wants a whole number, not "${text}"`);
  const value = BigInt(text);
  if (value > max) throw new CommandLineError(`${flag} wants a whole number up to ${max}, not "${text}"`);
  return value;
}

/** Pages forward from `after`, printing each page as it arrives; answers the last page's cut, if any. */
async function readForward(
  context: CommandContext,
  workerId: string,
  after: bigint,
  print: (entries: readonly TranscriptEntry[]) => Promise<void>,
): Promise<TranscriptCut | undefined> {
  const worker = await context.workerRef(workerId);
  let afterSeq = after;
  for (;;) {
    const page = await context.clients.observation.readTranscript({ worker, position: { case: "afterSeq", value: afterSeq }, limit: PAGE });
    await print(page.entries);
    const last = page.entries.at(-1);
    if (!page.hasMore || last === undefined) return page.cut;
    afterSeq = last.seq;
  }
}

/** Pages back from the tail until `count` entries are held, then returns them oldest first, with the cut the pages named. */
async function readTail(
  context: CommandContext,
  workerId: string,
  count: number,
): Promise<{ entries: TranscriptEntry[]; cut: TranscriptCut | undefined }> {
  const worker = await context.workerRef(workerId);
  const held: TranscriptEntry[] = [];
  let cut: TranscriptCut | undefined;
  let beforeSeq = TAIL_POSITION;
  while (held.length < count) {
    const limit = Math.min(PAGE, count - held.length);
    const page = await context.clients.observation.readTranscript({ worker, position: { case: "beforeSeq", value: beforeSeq }, limit });
    held.unshift(...page.entries);
    cut ??= page.cut;
    const first = page.entries[0];
    if (!page.hasMore || first === undefined) break;
    beforeSeq = first.seq;
  }
  return { entries: held.slice(-count), cut };
}
