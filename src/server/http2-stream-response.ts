import { Code, ConnectError } from "@connectrpc/connect";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import http2 from "node:http2";
import { drainedOrGone, nodeHeaders } from "./grpc-call-setup.js";

/**
 * Whether a response goes to its HTTP/2 stream by {@link writeStreamResponse}:
 * one without trailer fields (Connect, gRPC-Web; only gRPC has them).
 */
export function endsWithoutTrailerFields(response: UniversalServerResponse): boolean {
  return response.trailer === undefined || response.trailer.keys().next().done === true;
}

/**
 * Writes a response without trailer fields straight to its HTTP/2 stream, in
 * place of Node's compatibility response. That one always responds with
 * `waitForTrailers`: its last DATA frame goes without END_STREAM, Node asks
 * for trailers while flushing it, submits them (none: an empty DATA frame
 * with END_STREAM) from a setImmediate, and sends that only at the next
 * turn's flush, a whole loop turn after the message (Connect and gRPC-Web
 * unary calls over HTTP/2 paid it on every call). Without trailers, Node
 * puts END_STREAM on the DATA frame of a last write that the end follows
 * within the same tick, as here for a unary answer: one frame, one flush
 * (measured on Node 20 and 24, test/server/http2-stream-end.test.ts).
 *
 * The head goes out after the body's first chunk (the implementation may
 * still set headers until then), as connect-node's writer does.
 */
export async function writeStreamResponse(response: UniversalServerResponse, stream: http2.ServerHttp2Stream): Promise<void> {
  const chunks = response.body?.[Symbol.asyncIterator]();
  let writing = false;
  try {
    let chunk = await chunks?.next();
    writing = true;
    throwIfGone(stream);
    stream.respond({ ...nodeHeaders(response.header ?? new Headers()), ":status": response.status });
    while (chunks !== undefined && chunk !== undefined && chunk.done !== true) {
      stream.write(chunk.value);
      // The next chunk before waiting for "drain": had a large last chunk to drain first, its
      // END_STREAM would miss it and go in a DATA frame of its own, in a later flush.
      writing = false;
      chunk = await chunks.next();
      writing = true;
      if (chunk.done !== true && stream.writableNeedDrain) await drainedOrGone(stream);
      throwIfGone(stream);
    }
    stream.end();
  } catch (error) {
    // As connect-node does: a failed write is reported to the handler's body.
    if (writing) chunks?.throw?.(error).catch(() => undefined);
    throw error;
  } finally {
    chunks?.return?.().catch(() => undefined);
  }
}

/**
 * Resets a stream with NO_ERROR once its END_STREAM has been sent: a request
 * the server answered without reading it (an oversize message refused from
 * its length prefix or content-length) would otherwise hold the client's
 * flow-control window and the session's memory until the session dies. RFC
 * 9113 §8.1 allows this reset only after a complete response. Closing
 * earlier made Node send the reset in place of an END_STREAM that flow
 * control still held. "finish" comes once the last write has reached the
 * socket, which is almost always the frame carrying END_STREAM; nghttp2's
 * own stream state says whether it was (`localClose` is 1 from the write's
 * callback on, Node 20 and 24). A body that ended ticks after its last
 * write ends with an empty DATA frame of its own, which "finish" does not
 * wait for and flow control can hold: then the check repeats until it left.
 */
export function resetOnceEndStreamSent(stream: http2.ServerHttp2Stream): void {
  let timer: NodeJS.Timeout | undefined;
  const attempt = (): void => {
    timer = undefined;
    if (stream.destroyed || stream.closed) return;
    if (stream.state.localClose) {
      stream.close(http2.constants.NGHTTP2_NO_ERROR);
      return;
    }
    timer = setTimeout(attempt, END_STREAM_RECHECK_MS);
  };
  stream.once("close", () => clearTimeout(timer));
  if (stream.writableFinished) attempt();
  else stream.once("finish", attempt);
}

/** How often a reset waiting for a held END_STREAM checks again (only while the client keeps the window shut). */
const END_STREAM_RECHECK_MS = 10;

function throwIfGone(stream: http2.ServerHttp2Stream): void {
  if (stream.destroyed || stream.closed) throw new ConnectError("client went away", Code.Canceled);
}
