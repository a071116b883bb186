/**
 * A structured logger. The core logs through this seam only; the CLI plugs
 * in a pino logger, embedders whatever they use. Internal error text goes
 * here (through {@link errorLogFields}), never into client-visible messages.
 * `debug` and `child` are optional so an embedder's three-method logger
 * keeps working.
 */
export interface Logger {
  debug?(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** A logger that adds `fields` to every line (e.g. a run's worker_id and run_id). */
  child?(fields: Record<string, unknown>): Logger;
}

/**
 * Fields a caller hands the Runtime for the lines of the run its call starts
 * (the server's `request_id` and `rpc_method`): passed explicitly, since an
 * ambient context (AsyncLocalStorage) costs every promise in the process.
 */
export type LogFields = Readonly<Record<string, string>>;

/** A logger that drops everything (the embedded default). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};

/**
 * `logger.child(fields)`, or, for a logger without `child`, a wrapper that
 * merges `fields` under each line's own.
 */
export function childLogger(logger: Logger, fields: Record<string, unknown>): Logger {
  if (logger.child) return logger.child(fields);
  const merged = (line?: Record<string, unknown>): Record<string, unknown> => ({ ...fields, ...line });
  return {
    debug: (message, line) => logger.debug?.(message, merged(line)),
    info: (message, line) => logger.info(message, merged(line)),
    warn: (message, line) => logger.warn(message, merged(line)),
    error: (message, line) => logger.error(message, merged(line)),
    child: (more) => childLogger(logger, { ...fields, ...more }),
  };
}
