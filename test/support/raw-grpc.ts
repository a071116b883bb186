import { once } from "node:events";
import * as http2 from "node:http2";

/**
 * gRPC calls on a raw HTTP/2 session, so a test sees the wire as it is:
 * the response headers, each message's compressed flag and bytes, and the
 * trailers. Frames are built with `grpcFrame` (raw-http2.ts).
 */

/** Starts a gRPC call whose whole request body is `body` (zero, one or more frames). */
export function rawGrpcRequest(
  session: http2.ClientHttp2Session,
  path: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): http2.ClientHttp2Stream {
  const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
  stream.end(body);
  return stream;
}

/** The length-prefixed messages of a gRPC response body: each one's compressed flag and bytes. */
export async function* grpcFrames(stream: AsyncIterable<Buffer>): AsyncGenerator<{ flag: number; body: Buffer }> {
  let buffered = Buffer.alloc(0);
  for await (const chunk of stream) {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
      const body = buffered.subarray(5, 5 + buffered.readUInt32BE(1));
      yield { flag: buffered[0] as number, body };
      buffered = buffered.subarray(5 + body.length);
    }
  }
}

/** A whole raw call's answer. */
export interface RawGrpcAnswer {
  headers: http2.IncomingHttpHeaders;
  frames: { flag: number; body: Buffer }[];
  trailers: http2.IncomingHttpHeaders;
}

/** Makes one call on a new session and reads its whole answer. */
export async function rawGrpcCall(
  baseUrl: string,
  path: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): Promise<RawGrpcAnswer> {
  const session = http2.connect(baseUrl);
  try {
    const stream = rawGrpcRequest(session, path, body, headers);
    const trailersSeen = once(stream, "trailers").then(([trailers]) => trailers as http2.IncomingHttpHeaders);
    const [responseHeaders] = (await once(stream, "response")) as [http2.IncomingHttpHeaders];
    const frames: RawGrpcAnswer["frames"] = [];
    for await (const frame of grpcFrames(stream)) frames.push(frame);
    return { headers: responseHeaders, frames, trailers: await trailersSeen };
  } finally {
    session.close();
  }
}
