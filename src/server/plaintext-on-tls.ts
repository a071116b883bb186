import type net from "node:net";
import type tls from "node:tls";

/**
 * OpenSSL's verdicts on a first record that is an HTTP/1.x request: "http
 * request" (it begins GET, POST, HEAD or PUT) and "https proxy request"
 * (CONNECT). Anything else that is no TLS ("wrong version number": an
 * HTTP/2 preface, another method, any bytes) is closed as before: an HTTP/2
 * client reads an HTTP/1.1 answer as a protocol error, which is what an
 * HTTP/1.1 port gives it, so the CLI and the Backend would say "an HTTP/1.1
 * port" where a bare close makes them try TLS and say "speaks TLS; use
 * https://" (src/grpc-client/transport-cause.ts). A TLS client whose
 * handshake goes wrong gets other verdicts, and no plain text either.
 */
const HTTP1_REQUEST = new Set(["ERR_SSL_HTTP_REQUEST", "ERR_SSL_HTTPS_PROXY_REQUEST"]);

const BODY = "This port speaks TLS: connect with https:// (a gRPC client: with TLS credentials), not plain http://.\n";

/** The whole answer, fixed: one short write per connection, whatever the request. */
const REPLY = Buffer.from(
  `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(BODY)}\r\nConnection: close\r\n\r\n${BODY}`,
);

/**
 * Answers an HTTP/1.x request sent to a TLS listener (`curl http://`, a
 * browser) with a 400 saying the port speaks TLS, instead of the bare close
 * Node gives it (an empty reply, which tells the user nothing). Node
 * reports the failed handshake ('tlsClientError') while the raw socket
 * under it is still open, and destroys that socket just after: the answer
 * is written to the raw socket (`rawSocketOf`, found by its peer: the TLS
 * socket is closed already), and nothing is held past that destroy.
 */
export function answerPlainHttpOnTls(server: tls.Server, rawSocketOf: (tlsSocket: net.Socket) => net.Socket | undefined): void {
  server.on("tlsClientError", (error: Error & { code?: string }, tlsSocket: net.Socket) => {
    if (error.code === undefined || !HTTP1_REQUEST.has(error.code)) return;
    const raw = rawSocketOf(tlsSocket);
    if (raw?.writable) raw.end(REPLY);
  });
}
