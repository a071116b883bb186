import { createInterface, type Interface } from "node:readline";
import { Code, ConnectError } from "@connectrpc/connect";
import { expectPositionals, parseCommand, printHelp, reportError, withContext } from "./command-context.js";
import { EventPrinter } from "./event-printer.js";
import { type BoundedLine, checkInputSize, inputLimit, readBoundedLines } from "./input-limit.js";
import { ExitCode, type ExitCodeValue } from "./exit-codes.js";
import { parseBusy, streamRun } from "./run-stream.js";

const CHAT_USAGE = `usage: worker-runtime chat WORKER [--busy reject|enqueue|interrupt]
  An interactive loop: each line you type is sent to the worker and its reply streams back.
  Ctrl-C cancels the reply in progress; Ctrl-C at the prompt, Ctrl-D or /exit leaves.
  Errors (a busy worker, say) are shown and the loop goes on; a worker that is gone (deleted
  meanwhile) ends it with exit code 5.
  --busy  when a run is in flight: reject (default), enqueue, or interrupt it`;

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
    // A person at a terminal gets readline (a prompt, line editing, Ctrl-C at the prompt); piped lines are
    // read bounded instead, so a line longer than the limit is refused as it arrives, not held whole first.
    const readline = terminal ? createInterface({ input: process.stdin, output: process.stdout, terminal }) : undefined;
    const lines: AsyncIterable<BoundedLine> = readline ? typedLines(readline) : readBoundedLines(process.stdin, limit);
    const printer = new EventPrinter(context.output, workerId, {
      userMessages: false,
      runStates: false,
      workerStates: false,
      endErrors: false,
    });
    let running = false;
    // Node 24 throws on prompt() after close (Ctrl-D while a reply still streams).
    let closed = false;
    readline?.on("close", () => {
      closed = true;
    });
    let interruptHandler: (() => void) | undefined;
    readline?.on("SIGINT", () => {
      if (running) interruptHandler?.();
      else readline.close();
    });
    readline?.setPrompt(context.output.json ? "" : context.output.paint("bold", `${workerId}> `));
    const prompt = (): void => {
      if (!closed) readline?.prompt();
    };
    prompt();
    try {
      // The iterators hold back lines typed (or piped) while a reply streams.
      for await (const line of lines) {
        if ("refused" in line) {
          await reportError(line.refused, context, context.output.json);
          prompt();
          continue;
        }
        const text = line.text.trim();
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
            const failure = ConnectError.from(error);
            await reportError(failure, context, context.output.json);
            // The worker is gone (deleted, or never there): no later line could reach it.
            if (failure.code === Code.NotFound) return ExitCode.NOT_FOUND;
          } finally {
            running = false;
          }
        }
        prompt();
      }
    } finally {
      readline?.close();
    }
    if (terminal && !context.output.json) context.output.line();
    return ExitCode.OK;
  });
}

/** A terminal's lines in the shape of {@link readBoundedLines}' (a person's typing needs no bound while it is read). */
async function* typedLines(readline: Interface): AsyncGenerator<BoundedLine> {
  for await (const text of readline) yield { text };
}
