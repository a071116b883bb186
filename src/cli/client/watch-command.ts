import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../../../gen/worker_runtime/v1/errors_pb.js";
import { expectPositionals, parseCommand, printHelp, withContext } from "./command-context.js";
import { EventPrinter } from "./event-printer.js";
import { ExitCode, reasonOf, type ExitCodeValue } from "./exit-codes.js";
import { processInterrupts } from "./send-command.js";
import { typedError } from "./typed-error.js";

const WATCH_USAGE = `usage: worker-runtime watch WORKER [--from CURSOR]
  Prints the worker's events as they come: first its state (and any reply in progress),
  then every change. After a disconnect or a runtime restart it reconnects with backoff and
  resumes after the last cursor it saw, so no durable event is missed or repeated.
  A worker deleted while watched ends the watch at once (exit 5).
  --from CURSOR  start after this cursor (from an earlier --output json) instead of now
  Ctrl-C stops watching (exit 0).`;

/** Backoff between reconnects: doubling from the first to the cap, with jitter. */
const FIRST_DELAY_MS = 100;
const MAX_DELAY_MS = 5_000;

/** Reasons that say "not now": the runtime (or, through a Backend, the runtime behind it) is away or shed this stream. */
const TRANSIENT_REASONS: ReadonlySet<ErrorReason> = new Set([
  ErrorReason.RUNTIME_DRAINING,
  ErrorReason.RUNTIME_UNAVAILABLE,
  ErrorReason.SUBSCRIBER_TOO_SLOW,
  ErrorReason.STORE_UNAVAILABLE,
]);

/** Errors after which reconnecting can help: the server went away, or shed this stream. */
function isTransient(error: ConnectError): boolean {
  const reason = reasonOf(error);
  if (reason !== undefined && TRANSIENT_REASONS.has(reason)) return true;
  if (reason !== undefined && reason !== ErrorReason.UNSPECIFIED) return false;
  return [
    Code.Unavailable,
    Code.Internal,
    Code.Unknown,
    Code.DeadlineExceeded,
    Code.Aborted,
    Code.Canceled,
    Code.ResourceExhausted,
  ].includes(error.code);
}

/**
 * Whether the runtime says the worker does not exist: NOT_FOUND naming the
 * worker (a Backend's NOT_FOUND for a removed runtime names the runtime).
 */
function isWorkerNotFound(error: ConnectError): boolean {
  const detail = error.findDetails(ErrorDetailSchema)[0];
  return detail?.reason === ErrorReason.NOT_FOUND && detail.metadata.worker_id !== undefined;
}

/** A worker that was there and is gone: deleted, not a connection problem (NOT_FOUND, exit 5). */
function workerDeleted(workerId: string): ConnectError {
  return typedError(Code.NotFound, ErrorReason.NOT_FOUND, `worker ${workerId} was deleted`, { worker_id: workerId });
}

/** `watch`. */
export async function watch(argv: string[]): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, { from: { type: "string" } });
  if (values.help) return printHelp(WATCH_USAGE);
  expectPositionals(positionals, 1, 1, WATCH_USAGE);
  const workerId = positionals[0] ?? "";
  return withContext(values, { after_cursor: "--from" }, async (context) => {
    const worker = await context.workerRef(workerId);
    const printer = new EventPrinter(context.output, workerId, {
      userMessages: true,
      runStates: true,
      workerStates: true,
      endErrors: true,
    });
    const stop = new AbortController();
    const unsubscribe = processInterrupts(() => stop.abort());
    // Empty = start at the snapshot; afterwards the last durable cursor seen.
    let cursor = values.from ?? "";
    let failures = 0;
    let connected = false;
    try {
      while (!stop.signal.aborted) {
        try {
          let first = true;
          for await (const response of context.clients.observation.watchWorker({ worker, afterCursor: cursor }, { signal: stop.signal })) {
            failures = 0;
            if (response.snapshot) {
              if (connected && first) context.output.note(`worker-runtime: watch resumed after ${cursor || "the snapshot"}`);
              // A resumed stream's snapshot repeats what was shown; scripts still get it.
              if (!connected || context.output.json) printer.snapshot(response.snapshot);
              if (cursor === "") cursor = response.snapshot.cursor;
              connected = true;
            }
            first = false;
            for (const event of response.events) {
              printer.event(event);
              if (event.cursor !== "") cursor = event.cursor;
            }
            if (response.heartbeat?.cursor) cursor = response.heartbeat.cursor;
          }
          // A runtime ends a watch cleanly only when it shuts down (a deleted worker's ends with NOT_FOUND).
          throw new ConnectError("the server ended the stream", Code.Unavailable);
        } catch (error) {
          if (stop.signal.aborted) break;
          const connectError = ConnectError.from(error);
          // Shown before, gone now: deleted while watched (the runtime's NOT_FOUND, also through a Backend), or found
          // missing by a resume.
          if (connected && isWorkerNotFound(connectError)) throw workerDeleted(workerId);
          // Never connected: a wrong URL or token should fail now, not retry forever.
          if (!connected || !isTransient(connectError)) throw connectError;
          printer.endLine();
          const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** failures) * (0.5 + Math.random() / 2);
          failures += 1;
          context.output.note(`worker-runtime: watch disconnected (${connectError.rawMessage}); reconnecting in ${Math.round(delay)} ms`);
          await sleep(delay, undefined, { signal: stop.signal }).catch(() => undefined);
        }
      }
    } finally {
      unsubscribe();
      printer.endLine();
    }
    return ExitCode.OK;
  });
}
