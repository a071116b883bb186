import { toJson } from "@bufbuild/protobuf";
import {
  AllocationMode,
  AllocationSchema,
  DiagnosticSchema,
  DiagnosticSeverity,
  RuntimeSchema,
  RuntimeStatus,
  StoreKind,
  type Runtime,
} from "../../../gen/worker_runtime/v1/runtime_pb.js";
import { CommandLineError } from "./command-line-error.js";
import { everyPage } from "./every-page.js";
import { expectPositionals, parseCommand, printHelp, withContext, type CommandContext } from "./command-context.js";
import { ExitCode, type ExitCodeValue } from "./exit-codes.js";
import { enumName, timeText } from "./format.js";
import type { Style } from "./output.js";
import { unknownRuntime } from "./unknown-runtime.js";

const INFO_USAGE = `usage: worker-runtime runtime info
  The runtime's summary: id, version, status, store, limits, capabilities, worker counts.`;
const DIAGNOSTICS_USAGE = `usage: worker-runtime runtime diagnostics [--severity info|warning|error] [--worker ID]
  The runtime's diagnostics (every page), newest problems first as the runtime orders them.`;
const ALLOCATIONS_USAGE = `usage: worker-runtime runtime allocations
  The workspace and mount leases the runtime's workers hold (every page): holder, root, path,
  mode (write is exclusive, reads share), and whether the lease is the workspace's or a mount's.`;
const LIST_USAGE = `usage: worker-runtime runtimes list
  The runtimes behind the server: a Backend's registry with each runtime's health,
  or the one runtime a runtime server is.`;

/** `runtime info`. */
export async function runtimeInfo(argv: string[]): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, {});
  if (values.help) return printHelp(INFO_USAGE);
  expectPositionals(positionals, 0, 0, INFO_USAGE);
  return withContext(values, {}, async (context) => {
    const runtime = await summaryOf(context);
    if (context.output.json) context.output.jsonLine(toJson(RuntimeSchema, runtime));
    else printRuntime(context, runtime);
    return ExitCode.OK;
  });
}

/**
 * A runtime's summary: GetRuntime on a runtime; on a Backend, the summary
 * its registry keeps for the chosen runtime.
 */
async function summaryOf(context: CommandContext): Promise<Runtime> {
  const runtimes = await context.runtimes();
  const runtimeId = await context.runtimeId();
  const listed = runtimes.find((entry) => entry.runtimeId === runtimeId);
  // A wrong --runtime must not silently show another runtime's summary.
  if (listed === undefined)
    throw unknownRuntime(
      runtimeId,
      runtimes.map(({ runtimeId: known }) => known),
    );
  if (listed.summary !== undefined) return listed.summary;
  const { runtime } = await context.clients.management.getRuntime({ runtimeId });
  if (runtime === undefined) throw new Error("the server returned no runtime");
  return runtime;
}

function printRuntime(context: CommandContext, runtime: Runtime): void {
  const { output } = context;
  const counts = runtime.workerCounts;
  const capabilities = runtime.capabilities;
  const limits = runtime.limits;
  output.fields([
    ["runtime", runtime.runtimeId],
    ["name", runtime.displayName],
    ["version", runtime.version],
    ["status", enumName(RuntimeStatus, runtime.status), runtime.status === RuntimeStatus.SERVING ? "green" : "yellow"],
    ["started", timeText(runtime.startedAt)],
    ["store", enumName(StoreKind, runtime.storeKind)],
    ["workers", counts ? `${counts.idle} idle, ${counts.running} running, ${counts.stopped} stopped, ${counts.failed} failed` : ""],
    [
      "execution",
      capabilities
        ? [
            capabilities.executionBackend,
            capabilities.executionAvailable ? "" : `(unavailable: ${capabilities.executionUnavailableReason})`,
          ]
            .filter(Boolean)
            .join(" ")
        : "",
    ],
    ["profiles", capabilities?.profiles.map((profile) => profile.name).join(", ") ?? ""],
    ["capabilities", capabilities?.toolCapabilities.join(", ") ?? ""],
    ["workspace roots", capabilities?.workspaceRoots.join(", ") ?? ""],
    ["diagnostics", String(runtime.diagnosticCount)],
    [
      "limits",
      limits
        ? `page ${limits.maxPageSize}, input ${limits.maxInputBytes} B, queue ${limits.maxQueueDepth}, workers ${limits.maxWorkers}`
        : "",
    ],
  ]);
}

const SEVERITIES: Record<string, DiagnosticSeverity> = {
  info: DiagnosticSeverity.INFO,
  warning: DiagnosticSeverity.WARNING,
  error: DiagnosticSeverity.ERROR,
};

/** `runtime diagnostics`. */
export async function runtimeDiagnostics(argv: string[]): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, { severity: { type: "string" }, worker: { type: "string" } });
  if (values.help) return printHelp(DIAGNOSTICS_USAGE);
  expectPositionals(positionals, 0, 0, DIAGNOSTICS_USAGE);
  const minSeverity = values.severity === undefined ? DiagnosticSeverity.UNSPECIFIED : SEVERITIES[values.severity];
  return withContext(values, { worker_id: "--worker" }, async (context) => {
    if (minSeverity === undefined) throw new CommandLineError(`--severity must be info, warning or error, not "${values.severity}"`);
    // A Backend routes by it; a runtime ignores it.
    const runtimeId = await context.runtimeId();
    const rows: string[][] = [];
    const severities: DiagnosticSeverity[] = [];
    const workerId = values.worker ?? "";
    for await (const page of everyPage((pageToken) =>
      context.clients.management.listDiagnostics({ runtimeId, pageToken, minSeverity, workerId }),
    )) {
      for (const diagnostic of page.diagnostics) {
        if (context.output.json) context.output.jsonLine(toJson(DiagnosticSchema, diagnostic));
        severities.push(diagnostic.severity);
        rows.push([
          timeText(diagnostic.time),
          enumName(DiagnosticSeverity, diagnostic.severity).toLowerCase(),
          diagnostic.code,
          diagnostic.worker?.workerId ?? "",
          diagnostic.count > 1 ? `${diagnostic.message} (x${diagnostic.count})` : diagnostic.message,
        ]);
      }
    }
    if (!context.output.json) {
      if (rows.length === 0 && context.output.tables) context.output.line("no diagnostics");
      else
        context.output.table(["TIME", "SEVERITY", "CODE", "WORKER", "MESSAGE"], rows, (row, column) =>
          column === 1 ? severityStyle(severities[row]) : undefined,
        );
    }
    return ExitCode.OK;
  });
}

/** `runtime allocations`. */
export async function runtimeAllocations(argv: string[]): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, {});
  if (values.help) return printHelp(ALLOCATIONS_USAGE);
  expectPositionals(positionals, 0, 0, ALLOCATIONS_USAGE);
  return withContext(values, {}, async (context) => {
    // A Backend routes by it; a runtime checks it.
    const runtimeId = await context.runtimeId();
    const rows: string[][] = [];
    for await (const page of everyPage((pageToken) => context.clients.management.listAllocations({ runtimeId, pageToken }))) {
      for (const allocation of page.allocations) {
        if (context.output.json) context.output.jsonLine(toJson(AllocationSchema, allocation));
        rows.push([
          allocation.holder?.workerId ?? "",
          allocation.root,
          allocation.path || "/",
          enumName(AllocationMode, allocation.mode).toLowerCase(),
          allocation.mountName === "" ? "workspace" : `mount ${allocation.mountName}`,
          timeText(allocation.acquiredAt),
        ]);
      }
    }
    if (!context.output.json) {
      if (rows.length === 0 && context.output.tables) context.output.line("no allocations");
      else context.output.table(["WORKER", "ROOT", "PATH", "MODE", "FOR", "SINCE"], rows);
    }
    return ExitCode.OK;
  });
}

function severityStyle(severity: DiagnosticSeverity | undefined): Style | undefined {
  if (severity === DiagnosticSeverity.ERROR) return "red";
  if (severity === DiagnosticSeverity.WARNING) return "yellow";
  return undefined;
}

/** `runtimes list`. */
export async function runtimesList(argv: string[]): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, {});
  if (values.help) return printHelp(LIST_USAGE);
  expectPositionals(positionals, 0, 0, LIST_USAGE);
  return withContext(values, {}, async (context) => {
    const runtimes = await context.runtimes();
    if (context.output.json) {
      for (const entry of runtimes) {
        context.output.jsonLine(
          entry.json.summary === undefined && entry.summary ? { ...entry.json, summary: toJson(RuntimeSchema, entry.summary) } : entry.json,
        );
      }
      return ExitCode.OK;
    }
    const rows = runtimes.map((entry) => {
      const counts = entry.summary?.workerCounts;
      const workers = counts ? String(counts.idle + counts.running + counts.stopped + counts.failed) : "";
      return [entry.runtimeId, entry.health.replace(/^RUNTIME_HEALTH_/, ""), entry.endpoint, entry.summary?.version ?? "", workers];
    });
    context.output.table(["RUNTIME", "HEALTH", "ENDPOINT", "VERSION", "WORKERS"], rows, (row, column) =>
      column === 1 ? healthStyle(rows[row]?.[1]) : undefined,
    );
    return ExitCode.OK;
  });
}

function healthStyle(health: string | undefined): Style | undefined {
  if (health === "READY") return "green";
  if (health === "CONNECTING") return "yellow";
  return health === undefined ? undefined : "red";
}
