import tls from "node:tls";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema } from "../../../gen/worker_runtime/v1/errors_pb.js";

/**
 * Calls that failed below the RPC layer (no server answer at all), each
 * told as one sentence naming the server URL and the way out: marked so
 * that `describeError` prints the sentence as it is. Converted once, here,
 * to UNAVAILABLE (exit 3), whatever code the transport gave: an HTTP/1.1
 * port read as INTERNAL, a TLS port over http:// as CANCELED or ABORTED,
 * and none of those said which way out there is. (A WeakSet, not a
 * subclass: ConnectError's `instanceof` accepts any ConnectError.)
 */
const explained = new WeakSet<ConnectError>();

/** Whether `error` is a failure {@link explainTransportFailure} told in its own words. */
export function isTransportFailure(error: ConnectError): boolean {
  return explained.has(error);
}

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

/**
 * `error` as a transport failure in the CLI's words when it is one the CLI can explain,
 * else `error` unchanged (a server's typed error, or a failure mid-call that
 * says what it is already).
 */
export async function explainTransportFailure(error: ConnectError, server: string): Promise<ConnectError> {
  if (explained.has(error) || error.findDetails(ErrorDetailSchema).length > 0) return error;
  const sentence = await transportSentence(error, server);
  if (sentence === undefined) return error;
  const failure = new ConnectError(sentence, Code.Unavailable, undefined, undefined, error);
  explained.add(failure);
  return failure;
}

async function transportSentence(error: ConnectError, server: string): Promise<string | undefined> {
  const url = new URL(server);
  const { code, message } = nodeCause(error);
  if (code === "ECONNREFUSED") {
    return `cannot reach ${server}: nothing is listening there (connection refused); start the server, or point --server (or $WORKER_RUNTIME_SERVER) at the port it listens on`;
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return `cannot reach ${server}: no host ${url.hostname} (${code}); check the host name in --server (or $WORKER_RUNTIME_SERVER)`;
  }
  if (code === "ERR_HTTP2_ERROR") {
    return `${server} did not answer over HTTP/2: it is an HTTP/1.1 port (a server's --http1-port, or the console's); point --server at the server's gRPC port (serve --port, default 7070; backend --port, or npm start --grpc-port, default 7080)`;
  }
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER") return `${server} does not speak TLS; use ${withProtocol(url, "http:")}`;
  if (code !== undefined && UNTRUSTED.has(code)) {
    // Node 24 appends its own advice after a ";" ("…; if the root CA is installed locally, try --use-system-ca"): the cause is what comes before.
    const cause = message.split(";")[0]?.trim() ?? message;
    return `${server} has a TLS certificate this client does not trust (${cause}); trust its CA with NODE_EXTRA_CA_CERTS=PATH.pem, or fix the server's certificate`;
  }
  if (code?.startsWith("ERR_SSL_")) return `the TLS handshake with ${server} failed (${code}); check that the port serves TLS`;
  // A TLS server drops a connection that opens in plain text: the client sees the stream cancelled or the socket reset.
  const dropped = code === "ECONNRESET" || error.code === Code.Canceled || error.code === Code.Aborted;
  if (dropped && url.protocol === "http:" && (await speaksTls(url))) return `${server} speaks TLS; use ${withProtocol(url, "https:")}`;
  return undefined;
}

/** The Node error code and message the transport kept as the cause, if any. */
function nodeCause(error: ConnectError): { code: string | undefined; message: string } {
  const cause = error.cause;
  if (cause instanceof Error && "code" in cause && typeof cause.code === "string") return { code: cause.code, message: cause.message };
  return { code: undefined, message: error.rawMessage };
}

/** The server URL as the user wrote it, under another scheme. */
function withProtocol(url: URL, protocol: "http:" | "https:"): string {
  return `${protocol}//${url.host}${url.pathname === "/" ? "" : url.pathname}`;
}

/**
 * Whether a TLS handshake with the server's host and port completes (the
 * certificate unchecked: only the protocol is in question). Asked only
 * after an http:// connection was dropped, to tell a TLS port from a
 * server that went away.
 */
function speaksTls(url: URL): Promise<boolean> {
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
