import { MAX_TIMER_MS, MIN_LOOKUP_MS } from "../runtime/index.js";
import { DEFAULT_KEEPALIVE, type KeepaliveOptions } from "../server/index.js";
import { UsageError } from "./usage-error.js";

/**
 * The timing flags of a process that hosts a runtime (`serve`, `backend`):
 * how long a host path may take to answer (the runtime's
 * `limits.hostPathTimeoutMs`) and the HTTP/2 keepalive that finds a
 * vanished client (src/server/session-keepalive.ts). Flags only, as the
 * other limits are (--shutdown-grace-ms, --max-concurrent-streams): no
 * environment variables.
 */
export const OPERATOR_TIMEOUT_OPTIONS = {
  "host-path-timeout-ms": { type: "string" },
  "keepalive-interval-ms": { type: "string" },
  "keepalive-timeout-ms": { type: "string" },
} as const;

export const OPERATOR_TIMEOUT_USAGE = `  --host-path-timeout-ms  how long a workspace root, mount, lease check, private path or allowed
                 program's check on the host may take before it counts as not answering
                 (a hung network mount; default 5000)
  --keepalive-interval-ms  how often each HTTP/2 connection's peer is pinged (default 30000)
  --keepalive-timeout-ms   how long a ping may go unanswered before the connection and its
                 streams are closed (default 20000); a client that vanished without closing
                 its connection otherwise holds its streams for about a quarter of an hour`;

/** The parsed timing flags; undefined where a flag was not given (the defaults then apply). */
export interface OperatorTimeouts {
  hostPathTimeoutMs: number | undefined;
  keepalive: KeepaliveOptions | undefined;
}

/** The shortest keepalive interval or timeout: below it a loaded but live peer could be cut off. */
const MIN_KEEPALIVE_MS = 100;

/** Reads and checks the timing flags; a bad value is a UsageError (exit 2) naming its flag. */
export function operatorTimeoutsFromFlags(values: {
  "host-path-timeout-ms"?: string;
  "keepalive-interval-ms"?: string;
  "keepalive-timeout-ms"?: string;
}): OperatorTimeouts {
  const hostPath = values["host-path-timeout-ms"];
  const interval = values["keepalive-interval-ms"];
  const timeout = values["keepalive-timeout-ms"];
  const keepalive =
    interval === undefined && timeout === undefined
      ? undefined
      : {
          intervalMs:
            interval === undefined ? DEFAULT_KEEPALIVE.intervalMs : wholeMs("--keepalive-interval-ms", interval, MIN_KEEPALIVE_MS),
          timeoutMs: timeout === undefined ? DEFAULT_KEEPALIVE.timeoutMs : wholeMs("--keepalive-timeout-ms", timeout, MIN_KEEPALIVE_MS),
        };
  return { hostPathTimeoutMs: hostPath === undefined ? undefined : wholeMs("--host-path-timeout-ms", hostPath, MIN_LOOKUP_MS), keepalive };
}

/** A flag's whole number of milliseconds from `min` to the longest Node timer (a longer one fires at once). */
export function wholeMs(flag: string, value: string, min: number): number {
  // Decimal digits only: Number() reads "" as 0 and "1e3" or "0x10" as numbers.
  const ms = /^\d{1,10}$/.test(value) ? Number(value) : Number.NaN;
  if (!(ms >= min && ms <= MAX_TIMER_MS)) {
    throw new UsageError(`${flag} must be a whole number of milliseconds from ${min} to ${MAX_TIMER_MS}`);
  }
  return ms;
}
