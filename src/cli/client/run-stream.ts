import { Code, ConnectError } from "@connectrpc/connect";
import { BusyPolicy, type WorkerRef } from "../../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus, type Run } from "../../../gen/worker_runtime/v1/run_pb.js";
import { CommandLineError } from "./command-line-error.js";
import type { CommandContext } from "./command-context.js";
import type { EventPrinter } from "./event-printer.js";
import { ExitCode, type ExitCodeValue } from "./exit-codes.js";

/** `--busy` values. */
export const BUSY_POLICIES: Record<string, BusyPolicy> = {
  reject: BusyPolicy.REJECT,
  enqueue: BusyPolicy.ENQUEUE,
  interrupt: BusyPolicy.INTERRUPT,
};

export function parseBusy(value: string | undefined): BusyPolicy {
  const policy = BUSY_POLICIES[value ?? "reject"];
  if (policy === undefined) throw new CommandLineError(`--busy must be reject, enqueue or interrupt, not "${value}"`);
  return policy;
}

/** How long `send` waits for the run's status after the user stopped waiting: Ctrl-C twice means now. */
const STATUS_TIMEOUT_MS = 2_000;

/** Subscribes to the user's interrupt (Ctrl-C); returns the unsubscribe. */
export type InterruptSource = (handler: () => void) => () => void;

/** What one streamed input is. */
export interface StreamRunInit {
  ref: WorkerRef;
  text: string;
  busyPolicy: BusyPolicy;
  requestId: string;
  printer: EventPrinter;
  interrupts: InterruptSource;
}

/**
 * Sends input with StreamInput and prints the run's events until it ends.
 * The first interrupt cancels the run (CancelRun) and keeps streaming, so
 * what the run produced up to then is still shown and the exit reflects
 * the CANCELLED run; a second interrupt stops waiting.
 */
export async function streamRun(context: CommandContext, init: StreamRunInit): Promise<{ exit: ExitCodeValue; run: Run | undefined }> {
  const { interaction } = context.clients;
  const abort = new AbortController();
  let run: Run | undefined;
  let interrupted = 0;
  let cancelling: Promise<unknown> | undefined;
  const cancel = (): void => {
    if (run === undefined || cancelling !== undefined) return;
    // A second Ctrl-C also gives up on the cancel: a hung server would never answer it.
    cancelling = interaction.cancelRun({ worker: init.ref, runId: run.runId }, { signal: abort.signal }).catch((error: unknown) => {
      if (!abort.signal.aborted) context.output.note(`worker-runtime: cancel failed: ${ConnectError.from(error).rawMessage}`);
    });
  };
  const unsubscribe = init.interrupts(() => {
    interrupted += 1;
    if (interrupted === 1) cancel();
    else abort.abort();
  });
  try {
    const stream = interaction.streamInput(
      { worker: init.ref, input: { text: init.text }, busyPolicy: init.busyPolicy, requestId: init.requestId },
      { signal: abort.signal },
    );
    for await (const response of stream) {
      if (response.run) {
        run = response.run;
        init.printer.accepted(response.run);
        if (interrupted > 0) cancel();
      }
      for (const event of response.events) {
        if (event.kind.case === "runChanged" && event.kind.value.runId === run?.runId) run = event.kind.value;
        init.printer.event(event);
      }
    }
  } catch (error) {
    if (!(abort.signal.aborted && ConnectError.from(error).code === Code.Canceled)) throw error;
  } finally {
    unsubscribe();
    init.printer.endLine();
  }
  await cancelling;
  if (run !== undefined && run.status < RunStatus.COMPLETED) {
    // The stream ended early (a second Ctrl-C): report the run as it is now, if the server answers soon.
    const current = await interaction
      .getRun({ worker: init.ref, runId: run.runId }, { timeoutMs: STATUS_TIMEOUT_MS })
      .catch(() => undefined);
    run = current?.run ?? run;
  }
  return { exit: exitForRun(context, run, interrupted > 0), run };
}

function exitForRun(context: CommandContext, run: Run | undefined, interrupted: boolean): ExitCodeValue {
  switch (run?.status) {
    case RunStatus.COMPLETED:
      return ExitCode.OK;
    case RunStatus.CANCELLED:
      return ExitCode.CANCELLED;
    case RunStatus.FAILED:
    case RunStatus.INTERRUPTED: {
      if (context.output.json) return ExitCode.RUN_FAILED;
      const reason = run.error?.reason ? ` (reason: ${ErrorReason[run.error.reason]})` : "";
      context.output.note(
        `worker-runtime: run ${run.runId} ${RunStatus[run.status]}: ${run.error?.message || endedWithoutError(run)}${reason}`,
      );
      return ExitCode.RUN_FAILED;
    }
    default:
      // Still running, or never accepted, because the user stopped waiting; else the server sent no run.
      return run === undefined && !interrupted ? ExitCode.FAILURE : ExitCode.CANCELLED;
  }
}

/**
 * What to say of a run that ended without an error of its own: an
 * interrupted one was stopped by its runtime (a shutdown's drain, or a
 * restart after a crash: stop reason INTERRUPTED_BY_RESTART), which the
 * user could not tell from "no detail".
 */
function endedWithoutError(run: Run): string {
  return run.status === RunStatus.INTERRUPTED ? "the runtime stopped before the run ended (shut down or restarted)" : "no detail";
}
