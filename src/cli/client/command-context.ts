import { parseArgs, type ParseArgsConfig } from "node:util";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { WorkerRefSchema, type WorkerRef } from "../../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../../gen/worker_runtime/v1/errors_pb.js";
import type { RuntimeLimits } from "../../../gen/worker_runtime/v1/runtime_pb.js";
import { ambiguousValueMessage } from "../ambiguous-value.js";
import { CommandLineError, isCommandLineError } from "./command-line-error.js";
import { openConnection, type Connection, type ServiceClients } from "./connection.js";
import { COMMON_FIELDS, namedByFlag, refusesCommandLine, type FieldFlags } from "./flag-names.js";
import { describeError, EXIT_CODES_USAGE, ExitCode, exitCodeFor, reasonOf, TOKEN_ENV, type ExitCodeValue } from "./exit-codes.js";
import { explainTransportFailure } from "./transport-failure.js";
import { namesUnknownRuntime, unknownRuntime } from "./unknown-runtime.js";
import { Output } from "./output.js";
import { discoverRuntimes, pickRuntime, type RuntimeListing } from "./runtime-target.js";
import { OperatorFileError, readOperatorFileSync, TOKEN_FILE_MAX_BYTES } from "../../files/index.js";
import { isHeaderSafeToken } from "../../server/index.js";

/** Where the server is when neither --server nor the variable says. */
export const DEFAULT_SERVER = "http://127.0.0.1:7070";
/** Environment variables the client reads. */
export const SERVER_ENV = "WORKER_RUNTIME_SERVER";

type OptionsConfig = NonNullable<ParseArgsConfig["options"]>;

/** Options every client subcommand takes. */
export const GLOBAL_OPTIONS = {
  server: { type: "string" },
  "token-file": { type: "string" },
  runtime: { type: "string" },
  output: { type: "string" },
  protocol: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies OptionsConfig;

/** The part of every subcommand's `--help` that is the same for all. */
export const GLOBAL_USAGE = `global options:
  --server URL        runtime or Backend (else $${SERVER_ENV}, else ${DEFAULT_SERVER})
  --token-file PATH   file holding the bearer token (else $${TOKEN_ENV})
  --runtime ID        runtime to act on; needed only when the server has several
  --output text|json  json: one JSON object per line (protobuf JSON), errors as JSON on stderr
  --protocol grpc|connect  wire protocol over HTTP/2 (default grpc)
  -h, --help          this help
Tables and colours appear on a terminal (an empty cell reads -); piped output is plain
tab-separated text, one line per row, every row the same columns; a tab, line break or other
control character in a value (a table cell or a key: value line) is shown escaped
(\\t, \\n, \\u001b). NO_COLOR turns colours off.
${EXIT_CODES_USAGE}`;

/** The parsed global options. */
export interface GlobalValues {
  server?: string | undefined;
  "token-file"?: string | undefined;
  runtime?: string | undefined;
  output?: string | undefined;
  protocol?: string | undefined;
  help?: boolean | undefined;
}

/** The parseArgs config of a subcommand with options T. */
type CommandConfig<T extends OptionsConfig> = {
  args: string[];
  options: typeof GLOBAL_OPTIONS & T;
  allowPositionals: true;
  strict: true;
};

/** Spelled out so declarations can name it (node:util does not export its result type). */
export type ParsedCommand<T extends OptionsConfig> = ReturnType<typeof parseArgs<CommandConfig<T>>>;

/** Parses a subcommand's arguments together with the global options. */
export function parseCommand<const T extends OptionsConfig>(argv: string[], options: T): ParsedCommand<T> {
  const merged = { ...GLOBAL_OPTIONS, ...options } as typeof GLOBAL_OPTIONS & T;
  try {
    return parseArgs({ args: argv, options: merged, allowPositionals: true, strict: true });
  } catch (error) {
    const negative = ambiguousValueMessage(error, argv);
    throw negative !== undefined ? new CommandLineError(negative) : error;
  }
}

/** Prints a subcommand's help. */
export function printHelp(usage: string): ExitCodeValue {
  process.stdout.write(`${usage}\n\n${GLOBAL_USAGE}\n`);
  return ExitCode.OK;
}

/** Checks the number of positional arguments. */
export function expectPositionals(positionals: readonly string[], min: number, max: number, usage: string): void {
  if (positionals.length < min || positionals.length > max) {
    throw new CommandLineError(`${positionals.length < min ? "missing" : "unexpected"} arguments\n${usage}`);
  }
}

/** What a command body gets: output, clients, and runtime_id resolution. */
export class CommandContext {
  readonly output: Output;
  readonly server: string;
  private connection: Connection | undefined;
  private resolvedRuntime: Promise<string> | undefined;
  private listedRuntimes: Promise<RuntimeListing[]> | undefined;
  /** The runtime as discovery listed it, when --runtime did not name it. */
  private discovered: RuntimeListing | undefined;
  private limits: Promise<RuntimeLimits | undefined> | undefined;
  /** Where the token sent came from ("--token-file PATH", "$WORKER_RUNTIME_TOKEN"); undefined when none is sent. */
  tokenSource: string | undefined;

  constructor(
    private readonly values: GlobalValues,
    /** What the command line filled, so that errors name the user's flags. */
    readonly fields: FieldFlags = COMMON_FIELDS,
  ) {
    const format = values.output ?? "text";
    if (format !== "text" && format !== "json") throw new CommandLineError(`--output must be text or json, not "${format}"`);
    this.output = new Output({ json: format === "json", stdout: process.stdout, stderr: process.stderr, env: process.env });
    const server = values.server ?? (process.env[SERVER_ENV] || DEFAULT_SERVER);
    // User info would be dropped silently (the token is sent as a header), and it is a secret not to echo.
    if (/^[a-z]+:\/\/[^/]*@/i.test(server))
      throw new CommandLineError(`--server must not carry user info: put the token in --token-file or $${TOKEN_ENV}`);
    if (!/^https?:\/\/[^/]+/.test(server)) throw new CommandLineError(`--server must be an http:// or https:// URL, not "${server}"`);
    this.server = server;
  }

  /** --runtime as given (undefined: the server's only runtime is used). */
  get givenRuntime(): string | undefined {
    return this.values.runtime;
  }

  /** The connection, opened on first use. */
  get open(): Connection {
    if (this.connection === undefined) {
      const protocol = this.values.protocol ?? "grpc";
      if (protocol !== "grpc" && protocol !== "connect")
        throw new CommandLineError(`--protocol must be grpc or connect, not "${protocol}"`);
      this.connection = openConnection({ server: this.server, token: this.readToken(), protocol });
    }
    return this.connection;
  }

  get clients(): ServiceClients {
    return this.open.clients;
  }

  /** The runtimes behind the server (one for a runtime, the registry's for a Backend). */
  runtimes(): Promise<RuntimeListing[]> {
    // Asked once per command: `workers list` asks before it knows whether to pick one runtime.
    this.listedRuntimes ??= discoverRuntimes(this.open, this.server);
    return this.listedRuntimes;
  }

  /** --runtime, or the server's only runtime. */
  runtimeId(): Promise<string> {
    this.resolvedRuntime ??=
      this.values.runtime !== undefined
        ? Promise.resolve(this.values.runtime)
        : this.runtimes().then((listed) => {
            const runtimeId = pickRuntime(listed);
            this.discovered = listed.find((listing) => listing.runtimeId === runtimeId);
            return runtimeId;
          });
    return this.resolvedRuntime;
  }

  /**
   * The runtime's limits: from the summary that finding the runtime already
   * read (GetRuntime, or a Backend's registry), else asked once with
   * GetRuntime, so that a command pays for them at most once, and only
   * when it needs them.
   */
  runtimeLimits(): Promise<RuntimeLimits | undefined> {
    this.limits ??= this.runtimeId().then(async (runtimeId) => {
      const known = this.discovered?.summary?.limits;
      if (known !== undefined) return known;
      const { runtime } = await this.clients.management.getRuntime({ runtimeId });
      return runtime?.limits;
    });
    return this.limits;
  }

  async workerRef(workerId: string): Promise<WorkerRef> {
    return create(WorkerRefSchema, { runtimeId: await this.runtimeId(), workerId });
  }

  close(): void {
    this.connection?.close();
  }

  private readToken(): string | undefined {
    const file = this.values["token-file"];
    if (file !== undefined) {
      let token: string;
      try {
        token = readOperatorFileSync("--token-file", file, TOKEN_FILE_MAX_BYTES).bytes.toString("utf8").trim();
      } catch (cause) {
        if (cause instanceof OperatorFileError) throw new CommandLineError(cause.message);
        throw new CommandLineError(`cannot read --token-file ${file}: ${cause instanceof Error ? cause.message : String(cause)}`);
      }
      if (token === "") throw new CommandLineError(`--token-file ${file} is empty`);
      this.tokenSource = `--token-file ${file}`;
      return checkedToken(token, this.tokenSource);
    }
    const token = process.env[TOKEN_ENV];
    if (!token) return undefined;
    this.tokenSource = `$${TOKEN_ENV}`;
    return checkedToken(token, this.tokenSource);
  }
}

/**
 * A token goes into the authorization header, which takes visible ASCII
 * only. Checked here because the HTTP layer's own error quotes the whole
 * header value, token included.
 */
function checkedToken(token: string, source: string): string {
  if (isHeaderSafeToken(token)) return token;
  throw new CommandLineError(
    `the token in ${source} has characters an HTTP header cannot carry (a line break, a control or a non-ASCII character)`,
  );
}

/**
 * Runs a command body with a context, and turns what it throws into one
 * line on stderr and an exit code: typed server errors by their reason
 * (naming the flags in `fields` rather than request fields), command-line
 * mistakes as usage errors.
 */
export async function withContext(
  values: GlobalValues,
  fields: FieldFlags,
  body: (context: CommandContext) => Promise<ExitCodeValue>,
): Promise<ExitCodeValue> {
  let context: CommandContext | undefined;
  try {
    context = new CommandContext(values, { ...COMMON_FIELDS, ...fields });
    return await body(context);
  } catch (error) {
    return await reportError(error, context, values.output === "json");
  } finally {
    context?.close();
  }
}

/**
 * Prints an error as one line (JSON with --output json) and returns its
 * exit code: a server's refusal of a value the user typed is a usage error
 * (flag-names.ts, refusesCommandLine), else by its reason (exit-codes.ts). A failure below the RPC layer is explained first (which may
 * check whether an http:// server speaks TLS: transport-failure.ts).
 */
export async function reportError(error: unknown, context: CommandContext | undefined, json: boolean): Promise<ExitCodeValue> {
  if (isCommandLineError(error)) return reportCommandLineError(error, json);
  const server = context?.server ?? "the server";
  const refused = await sameUnknownRuntime(ConnectError.from(error), context);
  const fields = context?.fields ?? COMMON_FIELDS;
  const named = namedByFlag(refused, fields);
  const connectError = context === undefined ? named : await explainTransportFailure(named, server);
  const sentence = describeError(connectError, server, context?.tokenSource);
  if (json) {
    const reason = reasonOf(connectError);
    const payload = {
      error: { code: Code[connectError.code], reason: reason === undefined ? "" : ErrorReason[reason], message: connectError.rawMessage },
    };
    process.stderr.write(`${JSON.stringify(payload)}\n`);
  } else {
    process.stderr.write(`worker-runtime: ${sentence}\n`);
  }
  return refusesCommandLine(refused, fields) ? ExitCode.USAGE : exitCodeFor(connectError);
}

/**
 * A refusal of --runtime as the server words it (a runtime's
 * RUNTIME_MISMATCH, a Backend's NOT_FOUND) in the one sentence every
 * command prints (unknown-runtime.ts), naming the runtimes the server has;
 * the error unchanged when they cannot be listed or include it after all.
 */
async function sameUnknownRuntime(error: ConnectError, context: CommandContext | undefined): Promise<ConnectError> {
  const given = context?.givenRuntime;
  if (context === undefined || given === undefined || !namesUnknownRuntime(error, given)) return error;
  const known = await context.runtimes().then(
    (listed) => listed.map((entry) => entry.runtimeId),
    () => undefined,
  );
  return known === undefined || known.includes(given) ? error : unknownRuntime(given, known);
}

/**
 * Prints a command-line mistake (exit 2): a sentence, or with --output json
 * the same JSON line as a server's INVALID_ARGUMENT, so a script reading
 * stderr as JSON never meets plain text.
 */
export function reportCommandLineError(error: Error, json: boolean): ExitCodeValue {
  if (json) {
    const payload = { error: { code: Code[Code.InvalidArgument], reason: "", message: error.message } };
    process.stderr.write(`${JSON.stringify(payload)}\n`);
  } else {
    process.stderr.write(`worker-runtime: ${error.message}\n`);
  }
  return ExitCode.USAGE;
}

/** Whether argv asks for --output json, for errors found before the options are parsed (or while parsing them). */
export function asksForJson(argv: readonly string[]): boolean {
  return argv.some((arg, index) => arg === "--output=json" || (arg === "--output" && argv[index + 1] === "json"));
}
