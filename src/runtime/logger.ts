/**
 * A structured logger. The core logs through this seam only; the CLI plugs
 * in a JSON-lines logger, embedders whatever they use. Internal error text
 * goes here (as `cause`), never into client-visible messages.
 */
export interface Logger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** A logger that drops everything (the embedded default). */
export const silentLogger: Logger = {
  info() {},
  warn() {},
  error() {},
};
