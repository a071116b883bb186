import type http from "node:http";
import http2 from "node:http2";

/** A whole HTTP/2 answer as a test reads it: status, headers and trailers flattened to strings, body bytes. */
export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  trailers: Record<string, string>;
  body: Buffer;
}

/**
 * One request on `session` with Node's HTTP/2 client, for tests that send
 * bytes the generated clients never would (wrong content types, malformed
 * JSON, lying envelopes). Rejects on a stream error, and after `guardMs` if
 * the stream never closes (a request the server neither reads nor resets).
 */
export function http2Exchange(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
  guardMs = 10_000,
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers);
    const guard = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(new Error(`no complete answer for ${String(headers[":path"])}: the stream was neither read nor reset`));
    }, guardMs);
    const chunks: Buffer[] = [];
    let responseHeaders: Record<string, string> = {};
    let trailers: Record<string, string> = {};
    stream.on("response", (h) => (responseHeaders = flatHeaders(h)));
    stream.on("trailers", (t) => (trailers = flatHeaders(t)));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", reject);
    stream.on("close", () => {
      clearTimeout(guard);
      resolve({ status: Number(responseHeaders[":status"]), headers: responseHeaders, trailers, body: Buffer.concat(chunks) });
    });
    if (body) stream.end(body);
    else stream.end();
  });
}

/** Headers with each value as one string (a repeated one joined as Node's String() does). */
export function flatHeaders(headers: http2.IncomingHttpHeaders | http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers)) if (value !== undefined) out[key] = String(value);
  return out;
}
