import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { RuntimeHealth } from "../../../gen/worker_runtime/v1/backend_pb.js";
import { RegisteredRuntimeSchema, RuntimeRegistry, type RegisteredRuntime } from "../../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { CONFIG_FILE_MAX_BYTES, OperatorFileError, readOperatorFileSync, TOKEN_FILE_MAX_BYTES } from "../../files/index.js";
import { CommandLineError } from "./command-line-error.js";
import { type CommandContext, expectPositionals, parseCommand, printHelp, withContext } from "./command-context.js";
import { ExitCode, type ExitCodeValue } from "./exit-codes.js";
import type { FieldFlags } from "./flag-names.js";
import { cellText } from "./output.js";
import { enumName } from "./format.js";

const CREDENTIAL_FLAGS = `  --runtime-token-file PATH  the bearer token the runtime requires (the global --token-file is
                             the Backend's own); --ca-file PATH  PEM CA(s) for an https URL.`;
const ADD_USAGE = `usage: worker-runtime runtimes add RUNTIME_ID URL [--runtime-token-file PATH] [--ca-file PATH]
  Registers a remote runtime with the Backend (--server) and starts connecting to it; the runtime
  must report RUNTIME_ID. Lasts as long as the Backend process (backend.json is the lasting list).
${CREDENTIAL_FLAGS}`;
const UPDATE_USAGE = `usage: worker-runtime runtimes update RUNTIME_ID URL [--runtime-token-file PATH | --no-token] [--ca-file PATH]
  Re-points a registered runtime at a new URL, token or CA (a runtime that moved, a rotated token):
  the token and CA are replaced as given; a runtime that has a token needs it again, or --no-token.
  Watches the Backend relays from it stay open and resume at the new address; calls in flight on
  the old connection end UNAVAILABLE. The same values again change nothing.
${CREDENTIAL_FLAGS}`;
const REMOVE_USAGE = `usage: worker-runtime runtimes remove RUNTIME_ID
  Forgets a remote runtime: its workers leave the Backend's lists and watches relayed from it end.
  The runtime itself and its workers are not touched.`;

/** What the registry's errors name, as this command line fills it. */
const REGISTRY_FIELDS: FieldFlags = {
  runtime_id: "RUNTIME_ID",
  url: "URL",
  bearer_token: "--runtime-token-file",
  ca_certificate_pem: "--ca-file",
};

const CREDENTIAL_OPTIONS = {
  "runtime-token-file": { type: "string" },
  "ca-file": { type: "string" },
  "no-token": { type: "boolean" },
} as const;

/** `runtimes add`. */
export function runtimesAdd(argv: string[]): Promise<ExitCodeValue> {
  return pointCommand(argv, ADD_USAGE, async (registry, request) => (await registry.addRuntime(request)).runtime);
}

/**
 * `runtimes update`. The token is write-only and replaced as given, so an
 * update without `--runtime-token-file` of a runtime that has one would
 * drop it (and the runtime then refuses the Backend): that takes
 * `--no-token`, said on purpose.
 */
export function runtimesUpdate(argv: string[]): Promise<ExitCodeValue> {
  return pointCommand(argv, UPDATE_USAGE, async (registry, request, dropToken) => {
    if (request.bearerToken === "" && !dropToken) {
      const { runtime } = await registry.getRegisteredRuntime({ runtimeId: request.runtimeId });
      if (runtime?.hasCredentials === true) {
        throw new CommandLineError(
          `runtime ${request.runtimeId} has a token, which an update replaces: give it again with --runtime-token-file PATH (the Backend never shows it), or drop it with --no-token`,
        );
      }
    }
    return (await registry.updateRuntime(request)).runtime;
  });
}

/** `runtimes remove`. */
export async function runtimesRemove(argv: string[]): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, {});
  if (values.help) return printHelp(REMOVE_USAGE);
  expectPositionals(positionals, 1, 1, REMOVE_USAGE);
  const runtimeId = positionals[0] ?? "";
  return withContext(values, REGISTRY_FIELDS, async (context) => {
    await registered(context, () => registryOf(context).removeRuntime({ runtimeId }));
    if (context.output.json) context.output.jsonLine({ removed: runtimeId });
    else context.output.line(`removed ${cellText(runtimeId)}`);
    return ExitCode.OK;
  });
}

/** The request `add` and `update` send: the same fields, checked by the Backend. */
interface PointRequest {
  runtimeId: string;
  url: string;
  bearerToken: string;
  caCertificatePem: string;
}

/** `add` and `update`: RUNTIME_ID URL and the credential files in, the registered runtime out. */
async function pointCommand(
  argv: string[],
  usage: string,
  call: (registry: Client<typeof RuntimeRegistry>, request: PointRequest, dropToken: boolean) => Promise<RegisteredRuntime | undefined>,
): Promise<ExitCodeValue> {
  const { values, positionals } = parseCommand(argv, CREDENTIAL_OPTIONS);
  const dropToken = values["no-token"] === true;
  if (dropToken && values["runtime-token-file"] !== undefined)
    throw new CommandLineError("--no-token and --runtime-token-file contradict each other: give one");
  if (values.help) return printHelp(usage);
  expectPositionals(positionals, 2, 2, usage);
  const request: PointRequest = {
    runtimeId: positionals[0] ?? "",
    url: positionals[1] ?? "",
    bearerToken: readCredential("--runtime-token-file", values["runtime-token-file"], TOKEN_FILE_MAX_BYTES).trim(),
    caCertificatePem: readCredential("--ca-file", values["ca-file"], CONFIG_FILE_MAX_BYTES),
  };
  if (values["runtime-token-file"] !== undefined && request.bearerToken === "")
    throw new CommandLineError(`--runtime-token-file ${values["runtime-token-file"]} is empty`);
  return withContext(values, REGISTRY_FIELDS, async (context) => {
    const runtime = await registered(context, () => call(registryOf(context), request, dropToken));
    if (runtime === undefined) throw new Error("the server returned no runtime");
    printRegistered(context, runtime);
    return ExitCode.OK;
  });
}

/** A credential file's text ("" when the flag is not given); the Backend checks what it holds. */
function readCredential(flag: string, file: string | undefined, maxBytes: number): string {
  if (file === undefined) return "";
  try {
    return readOperatorFileSync(flag, file, maxBytes).bytes.toString("utf8");
  } catch (cause) {
    if (cause instanceof OperatorFileError) throw new CommandLineError(cause.message);
    throw new CommandLineError(`cannot read ${flag} ${file}: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

function registryOf(context: CommandContext): Client<typeof RuntimeRegistry> {
  return createClient(RuntimeRegistry, context.open.transport);
}

/**
 * A registry call, with a plain runtime's UNIMPLEMENTED said as what it
 * means: only a Backend keeps a registry of runtimes.
 */
async function registered<T>(context: CommandContext, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    // The command's own refusals (a command-line mistake found on the way) pass as they are.
    if (!(error instanceof ConnectError) || error.code !== Code.Unimplemented) throw error;
    throw new ConnectError(
      `${context.server} keeps no registry of runtimes: it is a runtime, not a Backend (add runtimes to a Backend's --server)`,
      Code.FailedPrecondition,
    );
  }
}

/** The runtime as the Backend registered it: its JSON, or one line with its health. */
function printRegistered(context: CommandContext, runtime: RegisteredRuntime): void {
  if (context.output.json) {
    context.output.jsonLine(toJson(RegisteredRuntimeSchema, runtime));
    return;
  }
  const health = enumName(RuntimeHealth, runtime.health).toLowerCase();
  // "connecting (connecting)" says nothing twice.
  const why = runtime.healthMessage === "" || runtime.healthMessage === health ? "" : ` (${runtime.healthMessage})`;
  context.output.line(`${cellText(runtime.runtimeId)} ${health}${why}`);
}
