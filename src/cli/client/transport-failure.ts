import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema } from "../../../gen/worker_runtime/v1/errors_pb.js";
import { speaksTls, transportCause } from "../../grpc-client/index.js";

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
  const cause = transportCause(error);
  switch (cause?.kind) {
    case "refused":
      return `cannot reach ${server}: nothing is listening there (connection refused); start the server, or point --server (or $WORKER_RUNTIME_SERVER) at the port it listens on`;
    case "no-host":
      return `cannot reach ${server}: no host ${url.hostname} (${cause.code}); check the host name in --server (or $WORKER_RUNTIME_SERVER)`;
    case "http1":
      return `${server} did not answer over HTTP/2: it is an HTTP/1.1 port (a server's --http1-port, or the console's); point --server at the server's gRPC port (serve --port, default 7070; backend --port, or npm start --grpc-port, default 7080)`;
    case "not-tls":
      return `${server} does not speak TLS; use ${withProtocol(url, "http:")}`;
    case "untrusted":
      return `${server} has a TLS certificate this client does not trust (${cause.detail}); trust its CA with NODE_EXTRA_CA_CERTS=PATH.pem, or fix the server's certificate`;
    case "tls-failed":
      return `the TLS handshake with ${server} failed (${cause.code}); check that the port serves TLS`;
    case "dropped":
      return url.protocol === "http:" && (await speaksTls(url)) ? `${server} speaks TLS; use ${withProtocol(url, "https:")}` : undefined;
    default:
      return undefined;
  }
}

/** The server URL as the user wrote it, under another scheme. */
function withProtocol(url: URL, protocol: "http:" | "https:"): string {
  return `${protocol}//${url.host}${url.pathname === "/" ? "" : url.pathname}`;
}
