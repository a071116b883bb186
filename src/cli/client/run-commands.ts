import { toJson } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../../gen/worker_runtime/v1/errors_pb.js";
import { RunSchema, type Run } from "../../../gen/worker_runtime/v1/run_pb.js";
import { ApprovalDecision } from "../../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { decisionRequestId } from "./decision-request-id.js";
import { expectPositionals, parseCommand, printHelp, withContext, type CommandContext } from "./command-context.js";
import { ExitCode, type ExitCodeValue } from "./exit-codes.js";
import { cellText } from "./output.js";
import { runStatusName, runStatusStyle } from "./format.js";
import { typedError } from "./typed-error.js";

const CANCEL_USAGE = `usage: worker-runtime cancel WORKER [RUN]
  Cancels RUN (default: the worker's run in flight). What it produced so far stays committed.
  Cancelling a run that already ended prints its final state.`;
const RETRY_NOTE = `  Repeating the same command with --run RUN is safe: it sends the same request id (default: derived
  from the decision, or --request-id ID) and prints the run instead of failing once the call is
  decided. Without --run the worker's run in flight is asked for again, which may by then be
  another run, or none.`;
const APPROVE_USAGE = `usage: worker-runtime approve WORKER CALL [--run RUN] [--request-id ID]
  Approves the tool call CALL that the worker's run (default: the one in flight) waits on.
${RETRY_NOTE}`;
const REJECT_USAGE = `usage: worker-runtime reject WORKER CALL [--reason TEXT] [--run RUN] [--request-id ID]
  Rejects the tool call CALL; the model is told it was rejected (and why, with --reason).
${RETRY_NOTE}`;

/**
 * The worker's run in flight, for commands that default to it. None is a
 * run not found, typed as the server types one (NOT_FOUND, exit 5), so
 * that this error reads and exits like every other.
 */
async function activeRunId(context: CommandContext, workerId: string): Promise<string> {
  const { worker } = await context.clients.catalog.getWorker({ worker: await context.workerRef(workerId) });
  if (worker?.activeRunId) return worker.activeRunId;
  throw typedError(Code.NotFound, ErrorReason.NOT_FOUND, `worker ${workerId} has no run in flight`, { worker_id: workerId });
}

function printRun(context: CommandContext, run: Run | undefined, verb: string): void {
  if (run === undefined) throw new Error("the server returned no run");
  if (context.output.json) context.output.jsonLine(toJson(RunSchema, run));
  else
    context.output.line(
      `${cellText(verb)} run ${cellText(run.runId)}: ${context.output.paint(runStatusStyle(run.status) ?? "bold", runStatusName(run.status))}`,
    );
}

/** `cancel`. */
export async function cancel(argv: string[]): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, {});
  if (values.help) return printHelp(CANCEL_USAGE);
  expectPositionals(positionals, 1, 2, CANCEL_USAGE);
  const [workerId = "", given] = positionals;
  return withContext(values, { run_id: "run" }, async (context) => {
    const runId = given ?? (await activeRunId(context, workerId));
    const { run } = await context.clients.interaction.cancelRun({ worker: await context.workerRef(workerId), runId });
    printRun(context, run, "cancelled");
    return ExitCode.OK;
  });
}

function resolveCommand(usage: string, decision: ApprovalDecision) {
  return async (argv: string[]): Promise<ExitCodeValue> => {
    const { values, positionals } = parseCommand(argv, {
      run: { type: "string" },
      reason: { type: "string" },
      "request-id": { type: "string" },
    });
    if (values.help) return printHelp(usage);
    expectPositionals(positionals, 2, 2, usage);
    const [workerId = "", toolCallId = ""] = positionals;
    return withContext(
      values,
      { run_id: "--run", tool_call_id: "call", reason: "--reason", request_id: "--request-id" },
      async (context) => {
        const runId = values.run ?? (await activeRunId(context, workerId));
        const reason = values.reason ?? "";
        const requestId = values["request-id"] ?? decisionRequestId(decision, toolCallId, reason);
        const { run } = await context.clients.interaction.resolveApproval({
          worker: await context.workerRef(workerId),
          runId,
          toolCallId,
          decision,
          reason,
          requestId,
        });
        printRun(context, run, decision === ApprovalDecision.APPROVE ? `approved ${toolCallId};` : `rejected ${toolCallId};`);
        return ExitCode.OK;
      },
    );
  };
}

/** `approve`. */
export const approve = resolveCommand(APPROVE_USAGE, ApprovalDecision.APPROVE);
/** `reject`. */
export const reject = resolveCommand(REJECT_USAGE, ApprovalDecision.REJECT);
