import tls from "node:tls";
import { Code, type ConnectError } from "@connectrpc/connect";

/**
 * Why a call failed below the RPC layer (no server answer at all), told
 * by kind so that each caller can say it in its own words: the CLI about
 * its --server, the Backend about a registered runtime's health. Only
 * codes and Node's own certificate text are read, never the URL or a token
 * (though the text of ERR_TLS_CERT_ALTNAME_INVALID names the host it asked for).
 */
export type TransportCause =
  | { kind: "refused" }
  | { kind: "no-host"; code: string }
  | { kind: "http1" }
  | { kind: "not-tls" }
  | { kind: "untrusted"; code: string; detail: string }
  | { kind: "tls-failed"; code: string }
  /** The connection was dropped: over http://, possibly a TLS port ({@link speaksTls} tells). */
  | { kind: "dropped" };

/** Certificate codes (node:tls, OpenSSL's verify results) that mean "not trusted", not "not TLS". */
const UNTRUSTED = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** How long the TLS check of an http:// server that dropped the connection may take. */
const TLS_CHECK_MS = 2_000;

/** The kind of transport failure `error` is, or undefined when it is not one this module knows. */
export function transportCause(error: ConnectError): TransportCause | undefined {
  const { code, message } = nodeCause(error);
  if (code === "ECONNREFUSED") return { kind: "refused" };
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return { kind: "no-host", code };
  if (code === "ERR_HTTP2_ERROR") return { kind: "http1" };
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER") return { kind: "not-tls" };
  if (code !== undefined && UNTRUSTED.has(code)) {
    // Node 24 appends its own advice after a ";" ("…; if the root CA is installed locally, try --use-system-ca"): the cause is what comes before.
    return { kind: "untrusted", code, detail: (message.split(";")[0] ?? message).trim() };
  }
  if (code?.startsWith("ERR_SSL_")) return { kind: "tls-failed", code };
  // A TLS server drops a connection that opens in plain text: the client sees the stream cancelled or the socket reset.
  if (code === "ECONNRESET" || error.code === Code.Canceled || error.code === Code.Aborted) return { kind: "dropped" };
  return undefined;
}

/** The Node error code and message the transport kept as the cause, if any. */
function nodeCause(error: ConnectError): { code: string | undefined; message: string } {
  const cause = error.cause;
  if (cause instanceof Error && "code" in cause && typeof cause.code === "string") return { code: cause.code, message: cause.message };
  return { code: undefined, message: error.rawMessage };
}

/**
 * Whether a TLS handshake with the server's host and port completes (the
 * certificate unchecked: only the protocol is in question). Asked only
 * after an http:// connection was dropped, to tell a TLS port from a
 * server that went away.
 */
export function speaksTls(url: URL): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: url.hostname.replace(/^\[|\]$/g, ""),
      port: Number(url.port || 80),
      rejectUnauthorized: false,
      ALPNProtocols: ["h2"],
      ...(/^[\d.]+$|:/.test(url.hostname) ? {} : { servername: url.hostname }),
    });
    const done = (answer: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(false), TLS_CHECK_MS);
    socket.once("secureConnect", () => done(true));
    socket.once("error", () => done(false));
  });
}
