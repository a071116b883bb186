import { trace } from "@opentelemetry/api";
import { type DestinationStream, type Level, type LevelWithSilent, pino } from "pino";
import { type Logger, spanLogFields } from "../runtime/index.js";

/** The environment variable that sets the log level. */
export const LOG_LEVEL_VARIABLE = "WORKER_RUNTIME_LOG_LEVEL";
/** The environment variable that lets model text and tool payloads into the log (dangerous: debugging only). */
export const LOG_PAYLOADS_VARIABLE = "WORKER_RUNTIME_LOG_PAYLOADS";

const LEVELS: readonly LevelWithSilent[] = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/** Thrown for a bad logging variable; the CLI reports it as a usage error. */
export class LogConfigError extends Error {
  override readonly name = "LogConfigError";
}

/** How the CLI logs, from the environment. */
export interface LogConfig {
  level: LevelWithSilent;
  /** Whether payload fields (model text, tool arguments and outputs, error details) are logged. */
  payloads: boolean;
}

/** Reads {@link LOG_LEVEL_VARIABLE} (default info) and {@link LOG_PAYLOADS_VARIABLE} (1 or 0, default 0). */
export function logConfigFromEnv(env: NodeJS.ProcessEnv = process.env): LogConfig {
  const level = env[LOG_LEVEL_VARIABLE]?.trim().toLowerCase() || "info";
  if (!isLevel(level)) {
    throw new LogConfigError(`${LOG_LEVEL_VARIABLE}="${env[LOG_LEVEL_VARIABLE]}" is not a log level; use one of ${LEVELS.join(", ")}`);
  }
  const payloads = env[LOG_PAYLOADS_VARIABLE]?.trim() || "0";
  if (payloads !== "0" && payloads !== "1") throw new LogConfigError(`${LOG_PAYLOADS_VARIABLE} must be 1 or 0, not "${payloads}"`);
  return { level, payloads: payloads === "1" };
}

function isLevel(value: string): value is LevelWithSilent {
  return (LEVELS as readonly string[]).includes(value);
}

/**
 * Fields that hold credentials: censored always, whatever the settings.
 * pino's paths match exact keys, at the top level and one level down.
 */
const SECRET_KEYS = ["authorization", "token", "bearer", "api_key", "apiKey", "secret", "secrets", "password", "cookie"];

/**
 * Fields that hold payloads — model text, tool arguments and outputs, and
 * `detail`, the free text of errors (which can echo a prompt): censored
 * unless payload logging is on.
 */
const PAYLOAD_KEYS = ["detail", "text", "content", "prompt", "input", "output", "arguments", "result", "body", "messages"];

/** The redact paths for a config (exported for the docs test). */
export function redactPaths(config: Pick<LogConfig, "payloads">): string[] {
  const keys = config.payloads ? SECRET_KEYS : [...SECRET_KEYS, ...PAYLOAD_KEYS];
  return keys.flatMap((key) => [key, `*.${key}`]);
}

/** What {@link createPinoLogger} needs besides the config. */
export interface PinoLoggerInit extends LogConfig {
  /** Where lines go (default: stderr, synchronously, so nothing is lost at exit). */
  destination?: DestinationStream;
  /** Fields on every line, e.g. the runtime id once it is known (read at each line). */
  process?: Record<string, string>;
}

/**
 * The CLI's logger: pino JSON lines (ISO time, level as a word, `message`),
 * each carrying the process's fields and the active span's trace and span
 * ids. The fields of the call (and of a child: a run's worker, run and
 * request ids) win over both.
 */
export function createPinoLogger(init: PinoLoggerInit): Logger {
  const processFields = init.process ?? {};
  const base = pino(
    {
      level: init.level,
      base: undefined,
      messageKey: "message",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: redactPaths(init), censor: "[redacted]" },
      mixin: () => ({ ...processFields, ...traceFields() }),
    },
    init.destination ?? pino.destination({ dest: 2, sync: true }),
  );
  return adapt(base, {});
}

/**
 * The active span's ids, when one is recording: for an embedder that installs
 * a context manager. The server's own lines get them from the call's log
 * fields (rpc-logging.ts); without a context manager none is active, at the
 * cost of one lookup.
 */
function traceFields(): Record<string, string> | undefined {
  return spanLogFields(trace.getActiveSpan());
}

/**
 * The core's seam over pino. A child merges its fields into each line's
 * object rather than using pino's bindings, so a field a line also sets
 * appears once.
 */
function adapt(base: pino.Logger, bound: Record<string, unknown>): Logger {
  const at =
    (level: Level) =>
    (message: string, fields?: Record<string, unknown>): void => {
      if (base.isLevelEnabled(level)) base[level]({ ...bound, ...fields }, message);
    };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (fields) => adapt(base, { ...bound, ...fields }),
  };
}
