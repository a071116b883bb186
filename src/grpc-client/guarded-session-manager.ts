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
 */
export class GuardedSessionManager extends Http2SessionManager {
  private readonly guarded = new WeakSet<Http2Session>();

  override async request(...args: Parameters<Http2SessionManager["request"]>): ReturnType<Http2SessionManager["request"]> {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session !== undefined && !this.guarded.has(session)) {
      this.guarded.add(session);
      session.on("error", ignoreSessionError);
    }
    return stream;
  }
}

function ignoreSessionError(): void {}
