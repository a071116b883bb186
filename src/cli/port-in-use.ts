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
