import { createServer } from "node:net";
import { UsageError } from "./usage-error.js";

/** A listener a server process opens, and the flag that chose its port. */
export interface PortFlag {
  flag: string;
  host: string;
  port: number;
}

/**
 * A listener that cannot open because of the ports its flags chose: a usage
 * error naming the flags, so the operator knows which one to change (a bare
 * EADDRINUSE stack named none). `npm start` prints it under its own flag
 * names ({@link renamed}): its --port is the backend's --http1-port.
 */
export class PortFlagError extends UsageError {
  override readonly name = "PortFlagError";

  constructor(
    private readonly flags: readonly string[],
    private readonly say: (flags: readonly string[]) => string,
  ) {
    super(say(flags));
  }

  /** The message with each flag renamed. */
  renamed(rename: (flag: string) => string): string {
    return this.say(this.flags.map(rename));
  }
}

/**
 * `error` as a {@link PortFlagError} when it is a listen's EADDRINUSE on
 * one of `listeners`' ports, else `error` unchanged.
 */
export function explainListenError(error: unknown, listeners: readonly PortFlag[]): unknown {
  if (!(error instanceof Error) || !("code" in error) || error.code !== "EADDRINUSE") return error;
  const failed = error as Error & { port?: unknown; address?: unknown };
  const listener =
    listeners.find((candidate) => candidate.port === failed.port && candidate.host === failed.address) ??
    listeners.find((candidate) => candidate.port === failed.port);
  if (listener === undefined) return error;
  const host = typeof failed.address === "string" ? failed.address : listener.host;
  const address = `${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${listener.port}`;
  return new PortFlagError(
    [listener.flag],
    ([flag]) => `${address} (${flag}) is already in use by another program: stop it, or choose another port with ${flag}`,
  );
}

/**
 * Two listeners asked for the same port: refused before either opens (the
 * second would find the first holding it, and blame "another program").
 * Port 0 (any free port) may repeat.
 */
export function checkDistinctPorts(listeners: readonly PortFlag[]): void {
  for (const [index, listener] of listeners.entries()) {
    const clash = listeners
      .slice(index + 1)
      .find((other) => other.port !== 0 && other.port === listener.port && other.host === listener.host);
    if (clash !== undefined) throw new PortFlagError([listener.flag, clash.flag], ([a, b]) => `${a} and ${b} must be different ports`);
  }
}

/**
 * Checks that each listener's port is free before anything else opens (the
 * data dir above all): a second `npm start` on the ports of a running one
 * used to open, lock and recover its data dir (the running one's, when
 * shared, met its lock instead of the port's message) before its bind
 * failed. Each fixed port is bound and released at once; a taken one throws
 * {@link explainListenError}'s usage error. Port 0 needs no check. Another
 * program may still take a port between this check and the real bind: that
 * bind's error is explained the same way, as before.
 */
export async function checkPortsFree(listeners: readonly PortFlag[]): Promise<void> {
  for (const listener of listeners) {
    if (listener.port === 0) continue;
    await new Promise<void>((resolve, reject) => {
      const probe = createServer();
      probe.once("error", (error: NodeJS.ErrnoException) => {
        // Only a taken port is this check's to report; anything else (EACCES, a host not here) the real bind reports.
        if (error.code === "EADDRINUSE") reject(explainListenError(error, listeners));
        else resolve();
      });
      probe.listen({ host: listener.host, port: listener.port, exclusive: true }, () => probe.close(() => resolve()));
    });
  }
}
