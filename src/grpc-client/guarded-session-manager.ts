import type { Http2Session } from "node:http2";
import { Http2SessionManager } from "@connectrpc/connect-node";

/**
 * connect-node's session manager, whose HTTP/2 sessions always have an
 * "error" listener. When a keepalive PING times out, connect-node destroys
 * the session with an error that Node emits only once the socket has
 * closed; by then the call has already failed with that error and, if the
 * manager was closed meanwhile (`abort()`: the CLI at the end of a command,
 * the Backend when a runtime is removed or at shutdown), its own listener
 * is gone, so the late event would crash the process. The error is not
 * lost: every stream on the session carries it.
 *
 * Its sessions' PINGs are guarded too: with `pingIdleConnection`, a stream
 * that closes after `abort()` destroyed its session (a runtime's health
 * watch, when the Backend removes or re-points that runtime) re-arms
 * connect-node's idle ping timer, which then pings the destroyed session;
 * Node throws there, from a timer, and the process ended. A PING on a
 * destroyed session now fails through its callback, as one cancelled by
 * the destroy does, and connect-node stops there.
 */
export class GuardedSessionManager extends Http2SessionManager {
  private readonly guarded = new WeakSet<Http2Session>();

  override async request(...args: Parameters<Http2SessionManager["request"]>): ReturnType<Http2SessionManager["request"]> {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session !== undefined && !this.guarded.has(session)) {
      this.guarded.add(session);
      session.on("error", ignoreSessionError);
      guardPing(session);
    }
    return stream;
  }
}

/** Makes `session.ping` report a destroyed session to its callback instead of throwing. */
function guardPing(session: Http2Session): void {
  const ping = session.ping.bind(session);
  const guarded = (...args: unknown[]): boolean => {
    if (!session.destroyed) return (ping as (...a: unknown[]) => boolean)(...args);
    const callback = args.at(-1);
    if (typeof callback === "function") process.nextTick(callback, new Error("the HTTP/2 session was destroyed"), 0, Buffer.alloc(0));
    return false;
  };
  session.ping = guarded as Http2Session["ping"];
}

function ignoreSessionError(): void {}
