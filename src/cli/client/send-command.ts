import { CommandLineError } from "./command-line-error.js";
import { expectPositionals, parseCommand, printHelp, withContext } from "./command-context.js";
import { EventPrinter } from "./event-printer.js";
import { checkInput, inputLimit, readBounded } from "./input-limit.js";
import type { ExitCodeValue } from "./exit-codes.js";
import { parseBusy, streamRun, type InterruptSource } from "./run-stream.js";

const SEND_USAGE = `usage: worker-runtime send WORKER ["TEXT"] [--busy reject|enqueue|interrupt] [--request-id ID]
  Sends TEXT (or, without it, everything on stdin) and streams the reply as it arrives,
  with tool calls, results and approval requests on lines of their own.
  --busy        when a run is in flight: reject (default), enqueue, or interrupt it
  --request-id  makes a retried send start at most one run
  Ctrl-C cancels the run (exit 130); a second Ctrl-C stops waiting.
  Exit: 0 when the run completed, 9 when it failed or was interrupted.`;

/** Ctrl-C as a signal to this process. */
export const processInterrupts: InterruptSource = (handler) => {
  process.on("SIGINT", handler);
  return () => process.off("SIGINT", handler);
};

/** `send`. */
export async function send(argv: string[]): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, { busy: { type: "string" }, "request-id": { type: "string" } });
  if (values.help) return printHelp(SEND_USAGE);
  expectPositionals(positionals, 1, 2, SEND_USAGE);
  const busyPolicy = parseBusy(values.busy);
  const [workerId = "", given] = positionals;
  if (given === "") throw new CommandLineError("the text is empty: nothing to send");
  if (given === undefined && process.stdin.isTTY)
    throw new CommandLineError(`no text given: pass it as an argument or on stdin\n${SEND_USAGE}`);
  return withContext(values, { request_id: "--request-id", "input.text": "the text" }, async (context) => {
    const text = given ?? (await readStdin(() => inputLimit(context)));
    await checkInput(context, text);
    const printer = new EventPrinter(context.output, workerId, {
      userMessages: false,
      runStates: false,
      workerStates: false,
      endErrors: false,
    });
    const { exit } = await streamRun(context, {
      ref: await context.workerRef(workerId),
      text,
      busyPolicy,
      requestId: values["request-id"] ?? "",
      printer,
      interrupts: processInterrupts,
    });
    return exit;
  });
}

async function readStdin(limit: () => Promise<number>): Promise<string> {
  const text = await readBounded(process.stdin, limit);
  if (text === "") throw new CommandLineError("stdin was empty: nothing to send");
  return text;
}
