import type http2 from "node:http2";
import type net from "node:net";

/** How often the server asks an HTTP/2 connection's peer whether it is still there, and how long it waits. */
export interface KeepaliveOptions {
  intervalMs: number;
  timeoutMs: number;
}

/**
 * A PING every 30 s, 20 s to answer. A client that vanishes without closing
 * its connection (a laptop closed, a NAT that forgot the flow) otherwise keeps
 * its streams, and what they hold, until TCP gives up on the heartbeats'
 * retransmissions, which takes about a quarter of an hour on Linux.
 */
export const DEFAULT_KEEPALIVE: KeepaliveOptions = { intervalMs: 30_000, timeoutMs: 20_000 };

/**
 * Pings the session's peer every `intervalMs`; a ping not answered within
 * `timeoutMs` destroys the session and its socket, which ends its streams
 * as a client's disconnect does, so everything they held is released. Every HTTP/2 client
 * answers PINGs itself (gRPC, connect-node, browsers), so a live peer never
 * notices; one ping is outstanding at a time.
 */
export function keepSessionAlive(
  session: http2.ServerHttp2Session,
  options: KeepaliveOptions,
  logReap: (fields: Record<string, unknown>) => void,
  socketOf: (session: http2.ServerHttp2Session) => net.Socket | undefined,
): void {
  let unanswered: NodeJS.Timeout | undefined;
  const interval = setInterval(() => {
    if (unanswered !== undefined || session.closed || session.destroyed) return;
    unanswered = setTimeout(() => {
      // Bounded (unanswered-ping-log.ts): idle sockets cost an attacker nothing and must not flood the log.
      logReap({
        remote_address: session.socket?.remoteAddress ?? "",
        remote_port: session.socket?.remotePort ?? 0,
        timeout_ms: options.timeoutMs,
      });
      // The socket too: a session's destroy ends it gracefully, waiting for its writes to leave, which to a
      // vanished peer they never do once the buffers are full.
      const socket = socketOf(session);
      session.destroy();
      socket?.destroy();
    }, options.timeoutMs);
    unanswered.unref();
    const sent = session.ping(() => {
      clearTimeout(unanswered);
      unanswered = undefined;
    });
    // Node refuses a ping while too many are outstanding: not this one's answer to wait for.
    if (!sent) {
      clearTimeout(unanswered);
      unanswered = undefined;
    }
  }, options.intervalMs);
  interval.unref();
  session.once("close", () => {
    clearInterval(interval);
    clearTimeout(unanswered);
  });
}
