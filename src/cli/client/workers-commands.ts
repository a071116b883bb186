import { create, type MessageInitShape, toJson } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { ErrorReason } from "../../../gen/worker_runtime/v1/errors_pb.js";
import { ProfileSelectorSchema } from "../../../gen/worker_runtime/v1/profile_pb.js";
import {
  type MountSpecSchema,
  WorkerSchema,
  WorkerStatus,
  WorkspaceSpecSchema,
  type Worker,
} from "../../../gen/worker_runtime/v1/worker_pb.js";
import { CommandLineError } from "./command-line-error.js";
import { expectPositionals, parseCommand, printHelp, withContext, type CommandContext } from "./command-context.js";
import { everyPage } from "./every-page.js";
import { ExitCode, reasonOf, type ExitCodeValue } from "./exit-codes.js";
import { connectivityText, labelsText, profileText, timeText, usageText, workerStatusText, workerStatusTextStyle } from "./format.js";
import { cellText } from "./output.js";

const LIST_USAGE = `usage: worker-runtime workers list [--status S]... [--label KEY=VALUE]...
  Every worker (all pages), as a table on a terminal, one tab-separated line each when piped.
  Against a Backend with several runtimes and no --runtime: the workers of every runtime, with a
  RUNTIME column first; a runtime that did not answer is named on stderr and the exit code is 3.
  The status of a worker whose run waits for a tool-call approval reads RUNNING (AWAITING_APPROVAL).
  --status   idle, running, stopped or failed (repeatable: any of them)
  --label    only workers with this label (repeatable: all of them)`;
const CREATE_USAGE = `usage: worker-runtime workers create --profile P [--workspace ROOT/PATH] [--capability C]...
                                     [--mount ROOT:PATH:NAME[:rw]]... [--label KEY=VALUE]... [--name TEXT]
                                     [--intent TEXT] [--request-id ID]
  Creates a worker and prints its id (its details on a terminal).
  --profile     builtin profile name (e.g. companion)
  --workspace   workspace: a root the runtime allows, then a path inside it (ROOT or ROOT/PATH)
  --capability  tool capability to grant: fs.read, fs.write, shell.exec (repeatable)
  --mount       one more directory for the worker's tools, seen at /mounts/NAME: a root the runtime
                allows, a path inside it ("" for the root), a name, and ":rw" to make it writable
                (repeatable; needs --workspace)
  --label       a KEY=VALUE label to find the worker by (repeatable; workers list --label)
  --name        display name, shown in lists and the console
  --intent      what the worker is for, in a sentence (shown by workers get)
  --request-id  makes a retried create return the same worker`;
const GET_USAGE = `usage: worker-runtime workers get WORKER
  One worker's details.`;
const STOP_USAGE = `usage: worker-runtime workers stop WORKER
  Stops a worker: cancels its run, releases its workspace, refuses further input. Idempotent.`;
const DELETE_USAGE = `usage: worker-runtime workers delete WORKER [--force]
  Deletes a stopped worker (--force: also one that is not stopped).`;

const STATUSES: Record<string, WorkerStatus> = {
  idle: WorkerStatus.IDLE,
  running: WorkerStatus.RUNNING,
  stopped: WorkerStatus.STOPPED,
  failed: WorkerStatus.FAILED,
};

/** The request fields `workers create` fills, by the flag that fills them. */
const CREATE_FIELDS = {
  labels: "--label",
  capabilities: "--capability",
  workspace: "--workspace",
  "workspace.root": "--workspace root",
  "workspace.path": "--workspace path",
  mounts: "--mount",
  display_name: "--name",
  intent: "--intent",
  request_id: "--request-id",
};

/**
 * Parses repeated --mount ROOT:PATH:NAME[:rw] flags. A final "rw" after
 * three parts makes the mount writable; a path may hold ":" itself.
 */
function parseMounts(values: readonly string[] | undefined): MessageInitShape<typeof MountSpecSchema>[] {
  return (values ?? []).map((value) => {
    const parts = value.split(":");
    const writable = parts.length >= 4 && parts[parts.length - 1] === "rw";
    if (writable) parts.pop();
    if (parts.length < 3) throw new CommandLineError(`--mount wants ROOT:PATH:NAME or ROOT:PATH:NAME:rw, not "${value}"`);
    const name = parts.pop() ?? "";
    const root = parts.shift() ?? "";
    return { root, path: parts.join(":"), name, writable };
  });
}

/** A worker's mounts as `workers get` shows them: where the tools see each, and where it comes from. */
function mountsText(worker: Worker): string {
  return worker.mounts
    .map((m) => `/mounts/${m.name} = ${[m.root, m.path].filter(Boolean).join("/")} (${m.writable ? "writable" : "read-only"})`)
    .join(", ");
}

/** Parses repeated KEY=VALUE flags. */
function parseLabels(pairs: readonly string[] | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of pairs ?? []) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new CommandLineError(`--label wants KEY=VALUE, not "${pair}"`);
    labels[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return labels;
}

/** `workers list`. */
export async function workersList(argv: string[]): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, {
    status: { type: "string", multiple: true },
    label: { type: "string", multiple: true },
  });
  if (values.help) return printHelp(LIST_USAGE);
  expectPositionals(positionals, 0, 0, LIST_USAGE);
  const statuses = (values.status ?? []).map((name) => {
    const status = STATUSES[name.toLowerCase()];
    if (status === undefined) throw new CommandLineError(`--status must be idle, running, stopped or failed, not "${name}"`);
    return status;
  });
  const labelSelector = parseLabels(values.label);
  return withContext(values, { label_selector: "--label", statuses: "--status" }, async (context) => {
    // Several runtimes behind a Backend and none chosen: the Backend lists across all of them.
    const across = values.runtime === undefined && (await context.runtimes()).length > 1;
    const runtimeId = across ? "" : await context.runtimeId();
    const { output } = context;
    const row = (worker: Worker): string[] => (across ? [worker.ref?.runtimeId ?? "", ...workerRow(worker)] : workerRow(worker));
    // A table needs every row for its widths; JSON and piped lines go out page by page.
    const held: Worker[] = [];
    const failed = new Map<string, string>();
    for await (const page of everyPage((pageToken) =>
      context.clients.catalog.listWorkers({ runtimeId, pageToken, statuses, labelSelector }),
    )) {
      for (const worker of page.workers) {
        if (output.json) output.jsonLine(toJson(WorkerSchema, worker));
        else if (output.tables) held.push(worker);
        else output.row(row(worker));
      }
      for (const failure of page.failedRuntimes) failed.set(failure.runtimeId, failure.message);
    }
    if (output.tables) {
      const status = across ? 2 : 1;
      if (held.length === 0) output.line("no workers");
      else
        output.table(
          [...(across ? ["RUNTIME"] : []), "WORKER", "STATUS", "PROFILE", "CONNECTIVITY", "ACTIVE RUN", "LABELS", "CREATED", "NAME"],
          held.map(row),
          (index, column) => (column === status && held[index] ? workerStatusTextStyle(held[index]) : undefined),
        );
    }
    // What was listed stands; the runtimes missing from it are named, and the exit code says it is partial.
    for (const [id, message] of failed) output.note(`worker-runtime: runtime ${id} not listed: ${message}`);
    return failed.size > 0 ? ExitCode.UNREACHABLE : ExitCode.OK;
  });
}

function workerRow(worker: Worker): string[] {
  return [
    worker.ref?.workerId ?? "",
    workerStatusText(worker),
    profileText(worker),
    // The reason is long; `workers get` shows it.
    connectivityText(worker).replace(/:.*$/, ""),
    worker.activeRunId,
    labelsText(worker.labels),
    timeText(worker.createdAt),
    // Last, so piped rows keep the positions they had before it was added.
    worker.displayName,
  ];
}

/** `workers create`. */
export async function workersCreate(argv: string[]): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, {
    profile: { type: "string" },
    workspace: { type: "string" },
    capability: { type: "string", multiple: true },
    mount: { type: "string", multiple: true },
    label: { type: "string", multiple: true },
    name: { type: "string" },
    intent: { type: "string" },
    "request-id": { type: "string" },
  });
  if (values.help) return printHelp(CREATE_USAGE);
  expectPositionals(positionals, 0, 0, CREATE_USAGE);
  if (values.profile === undefined) throw new CommandLineError(`--profile is required\n${CREATE_USAGE}`);
  const labels = parseLabels(values.label);
  const mounts = parseMounts(values.mount);
  const workspace = values.workspace;
  // The runtime refuses it too (INVALID_ARGUMENT on "workspace"); saying so here names the flag without a call.
  // A name it does not know is left to it ("unknown capability"), so the client keeps no list of its own.
  if (values.capability !== undefined && workspace === undefined) {
    // The core's own list, loaded only on this path: the client does not load the runtime otherwise.
    const { isToolCapability } = await import("../../runtime/index.js");
    const tool = values.capability.find(isToolCapability);
    if (tool !== undefined) {
      throw new CommandLineError(`--capability ${tool} needs --workspace: a worker's tools work in its workspace\n${CREATE_USAGE}`);
    }
  }
  // The same for a mount: the runtime's refusal ("--mount: need a workspace") came only after a call, and named no flag to add.
  const [mount] = values.mount ?? [];
  if (mount !== undefined && workspace === undefined) {
    throw new CommandLineError(
      `--mount ${mount} needs --workspace: the tools that use a mount run in the worker's workspace\n${CREATE_USAGE}`,
    );
  }
  return withContext(values, CREATE_FIELDS, async (context) => {
    const slash = workspace?.indexOf("/") ?? -1;
    const response = await context.clients.catalog.createWorker({
      runtimeId: await context.runtimeId(),
      profile: create(ProfileSelectorSchema, { source: { case: "builtin", value: values.profile ?? "" } }),
      capabilities: values.capability ?? [],
      labels,
      displayName: values.name ?? "",
      intent: values.intent ?? "",
      requestId: values["request-id"] ?? "",
      mounts,
      ...(workspace !== undefined
        ? {
            workspace: create(WorkspaceSpecSchema, {
              root: slash < 0 ? workspace : workspace.slice(0, slash),
              path: slash < 0 ? "" : workspace.slice(slash + 1),
            }),
          }
        : {}),
    });
    printWorker(context, response.worker, true);
    return ExitCode.OK;
  });
}

/** `workers get`, `workers stop` and `workers delete` share this shape: one worker by id. */
function oneWorkerCommand(
  usage: string,
  extra: { force?: boolean },
  act: (context: CommandContext, workerId: string, force: boolean) => Promise<void>,
) {
  return async (argv: string[]): Promise<ExitCodeValue> => {
    const { values, positionals } = parseCommand(argv, extra.force ? { force: { type: "boolean" } } : {});
    if (values.help) return printHelp(usage);
    expectPositionals(positionals, 1, 1, usage);
    const force = "force" in values && values.force === true;
    return withContext(values, {}, async (context) => {
      await act(context, positionals[0] ?? "", force);
      return ExitCode.OK;
    });
  };
}

export const workersGet = oneWorkerCommand(GET_USAGE, {}, async (context, workerId) => {
  const { worker } = await context.clients.catalog.getWorker({ worker: await context.workerRef(workerId) });
  printWorker(context, worker, false);
});

export const workersStop = oneWorkerCommand(STOP_USAGE, {}, async (context, workerId) => {
  const { worker } = await context.clients.catalog.stopWorker({ worker: await context.workerRef(workerId) });
  if (context.output.json) printWorker(context, worker, false);
  else context.output.line(`stopped ${cellText(workerId)}`);
});

export const workersDelete = oneWorkerCommand(DELETE_USAGE, { force: true }, async (context, workerId, force) => {
  await context.clients.catalog.deleteWorker({ worker: await context.workerRef(workerId), force }).catch((error: unknown) => {
    throw withForceFlag(ConnectError.from(error), workerId);
  });
  if (context.output.json) context.output.jsonLine({ deleted: workerId });
  else context.output.line(`deleted ${cellText(workerId)}`);
});

/**
 * The runtime's WORKER_NOT_STOPPED says "set force", the request field;
 * the user's way out is the command or the flag, so the sentence names them.
 */
function withForceFlag(error: ConnectError, workerId: string): ConnectError {
  if (reasonOf(error) !== ErrorReason.WORKER_NOT_STOPPED) return error;
  const sentence = `worker ${workerId} is not stopped: stop it first (workers stop) or delete it with --force`;
  const translated = new ConnectError(sentence, error.code, error.metadata, undefined, error.cause);
  translated.details = error.details;
  return translated;
}

/** A worker as JSON, as its id alone when piped after create, or as fields. */
function printWorker(context: CommandContext, worker: Worker | undefined, created: boolean): void {
  const { output } = context;
  if (worker === undefined) throw new Error("the server returned no worker");
  if (output.json) {
    output.jsonLine(toJson(WorkerSchema, worker));
    return;
  }
  if (created && !output.tables) {
    // `W=$(worker-runtime workers create ...)` gets just the id.
    output.line(cellText(worker.ref?.workerId ?? ""));
    return;
  }
  output.fields([
    ["worker", worker.ref?.workerId ?? ""],
    ["runtime", worker.ref?.runtimeId ?? ""],
    ["status", workerStatusText(worker), workerStatusTextStyle(worker) ?? "bold"],
    ["connectivity", connectivityText(worker)],
    ["profile", profileText(worker)],
    ["name", worker.displayName],
    ["intent", worker.intent],
    ["capabilities", worker.capabilities.join(", ")],
    ["workspace", worker.workspace ? [worker.workspace.root, worker.workspace.path].filter(Boolean).join("/") : ""],
    ...(worker.mounts.length > 0 ? ([["mounts", mountsText(worker)]] as const) : []),
    ["labels", labelsText(worker.labels)],
    ["active run", worker.activeRunId],
    ["queued runs", String(worker.queuedRuns)],
    ["usage", usageText(worker.usage)],
    ["created", timeText(worker.createdAt)],
    ["updated", timeText(worker.updatedAt)],
    ...(worker.failureMessage ? ([["failure", worker.failureMessage]] as const) : []),
  ]);
}
