import type { ConnectError } from "@connectrpc/connect";
import { speaksTls, transportCause } from "../grpc-client/index.js";

/**
 * Why a registered runtime cannot be reached, in the registry's words
 * (RegisteredRuntime.health_message, ListWorkers' failed runtimes), from
 * the same classification the CLI gives its own connection
 * (grpc-client/transport-cause.ts). Operators read it in the console; it
 * names neither the URL nor a token (the log has the raw cause).
 */
export function unreachableMessage(error: ConnectError): string {
  const cause = transportCause(error);
  switch (cause?.kind) {
    case "refused":
      return "the runtime cannot be reached: nothing is listening there (connection refused)";
    case "no-host":
      return `the runtime cannot be reached: no such host (${cause.code})`;
    case "http1":
      return "the runtime did not answer over HTTP/2: the url names an HTTP/1.1 port, not the runtime's gRPC port";
    case "not-tls":
      return "the runtime does not speak TLS; use http://";
    case "untrusted": {
      // Node's text for a wrong name quotes the host the url gives: the registry's message names no part of the url.
      const detail = cause.code === "ERR_TLS_CERT_ALTNAME_INVALID" ? "the certificate does not name the url's host" : cause.detail;
      return `the runtime has a TLS certificate the backend does not trust (${detail}); give its CA, or fix the runtime's certificate`;
    }
    case "tls-failed":
      return `the TLS handshake with the runtime failed (${cause.code}); check that the port serves TLS`;
    default:
      return "the runtime cannot be reached";
  }
}

/**
 * A connection's unreachable messages: {@link unreachableMessage}, and for a
 * dropped http:// connection a TLS handshake with the same port, whose
 * verdict is told through `later` when it differs from what was said and
 * kept for the next failure, so the message does not flap between attempts.
 */
export class UnreachableReasons {
  private dropped: { endpoint: string; message: string } | undefined;

  message(error: ConnectError, endpoint: string, later: (message: string) => void): string {
    const url = URL.parse(endpoint);
    if (transportCause(error)?.kind !== "dropped" || url?.protocol !== "http:") return unreachableMessage(error);
    const said = this.dropped?.endpoint === endpoint ? this.dropped.message : unreachableMessage(error);
    void speaksTls(url).then((tls) => {
      const message = tls ? "the runtime speaks TLS; use https://" : unreachableMessage(error);
      this.dropped = { endpoint, message };
      if (message !== said) later(message);
    });
    return said;
  }
}
