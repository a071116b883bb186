import { createInterface } from "node:readline";
import { ConnectError } from "@connectrpc/connect";
import { expectPositionals, parseCommand, printHelp, reportError, withContext } from "./command-context.js";
import { EventPrinter } from "./event-printer.js";
import { checkInputSize, inputLimit } from "./input-limit.js";
import { ExitCode, type ExitCodeValue } from "./exit-codes.js";
import { parseBusy, streamRun } from "./run-stream.js";

const CHAT_USAGE = `usage: worker-runtime chat WORKER [--busy reject|enqueue|interrupt]
  An interactive loop: each line you type is sent to the worker and its reply streams back.
  Ctrl-C cancels the reply in progress; Ctrl-C at the prompt, Ctrl-D or /exit leaves.
  Errors (a busy worker, say) are shown and the loop goes on.`;

/** `chat`. */
export async function chat(argv: string[]): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, { busy: { type: "string" } });
  if (values.help) return printHelp(CHAT_USAGE);
  expectPositionals(positionals, 1, 1, CHAT_USAGE);
  const busyPolicy = parseBusy(values.busy);
  const workerId = positionals[0] ?? "";
  return withContext(values, { "input.text": "the line" }, async (context) => {
    const ref = await context.workerRef(workerId);
    // Fails now, with its typed error, if the worker does not exist.
    await context.clients.catalog.getWorker({ worker: ref });
    const limit = await inputLimit(context);
    const terminal = process.stdin.isTTY === true;
    const lines = createInterface({ input: process.stdin, output: process.stdout, terminal });
    const printer = new EventPrinter(context.output, workerId, { userMessages: false, runStates: false, workerStates: false });
    let running = false;
    // Piped input ends (EOF) while a reply still streams; Node 24 throws on prompt() after close.
    let closed = false;
    lines.on("close", () => {
      closed = true;
    });
    let interruptHandler: (() => void) | undefined;
    lines.on("SIGINT", () => {
      if (running) interruptHandler?.();
      else lines.close();
    });
    // A prompt only for a person at a terminal; piped lines are just sent.
    lines.setPrompt(terminal && !context.output.json ? context.output.paint("bold", `${workerId}> `) : "");
    lines.prompt();
    try {
      // The async iterator buffers lines typed (or piped) while a reply streams.
      for await (const line of lines) {
        const text = line.trim();
        if (text === "/exit" || text === "/quit") break;
        if (text !== "") {
          running = true;
          try {
            checkInputSize(text, limit);
            await streamRun(context, {
              ref,
              text,
              busyPolicy,
              requestId: "",
              printer,
              interrupts: (handler) => {
                interruptHandler = handler;
                // Without a terminal, Ctrl-C reaches the process as a signal.
                process.on("SIGINT", handler);
                return () => {
                  interruptHandler = undefined;
                  process.off("SIGINT", handler);
                };
              },
            });
          } catch (error) {
            reportError(ConnectError.from(error), context, context.output.json);
          } finally {
            running = false;
          }
        }
        if (!closed) lines.prompt();
      }
    } finally {
      lines.close();
    }
    if (terminal && !context.output.json) context.output.line();
    return ExitCode.OK;
  });
}
