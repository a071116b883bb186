import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resetOnceEndStreamSent, writeStreamResponse } from "../../src/server/http2-stream-response.js";
import { DATA, END_STREAM, HEADERS, RST_STREAM } from "../support/raw-http2.js";
import { RawHttp2Client } from "../support/raw-http2-client.js";

/**
 * The NO_ERROR reset of an unread request, where the response's END_STREAM
 * is a DATA frame of its own (the body ended a while after its last chunk)
 * and flow control holds it: the reset must wait for it, never replace it.
 * The server's own routes end every body in the tick of its last chunk, so
 * END_STREAM rides that chunk; this case needs a body of its own, served
 * here by a bare Node HTTP/2 server through the same two functions.
 */

/** RFC 9113 §6.9.2: a new connection's send window. */
const CONNECTION_WINDOW = 65_535;
/** How long a body waits after its chunk before it ends. */
const LATE_END_MS = 20;

async function* body(bytes: number, endAfterMs: number): AsyncIterable<Uint8Array> {
  yield Buffer.alloc(bytes, 0x61);
  // Ending at once (in the tick of the chunk) puts END_STREAM on the chunk's last DATA frame.
  if (endAfterMs > 0) await new Promise((resolve) => setTimeout(resolve, endAfterMs));
}

describe("resetting an unread request's stream", () => {
  let server: http2.Http2Server;
  let port: number;

  beforeAll(async () => {
    server = http2.createServer();
    server.on("stream", (stream, headers) => {
      // "/bulk" takes the whole connection window; "/late-end" is never read and ends its body late.
      const response =
        headers[":path"] === "/bulk"
          ? { status: 200, body: body(CONNECTION_WINDOW, 0) }
          : { status: 200, body: body(100, LATE_END_MS), header: new Headers({ "content-type": "application/proto" }) };
      if (headers[":path"] === "/bulk") stream.resume();
      // As connect reads a length prefix and stops. (A stream never read at all Node resets by itself
      // once its writable side finishes, END_STREAM sent or not: not the server's case.)
      else stream.once("data", () => stream.pause());
      void writeStreamResponse(response, stream).then(() => {
        if (headers[":path"] !== "/bulk") resetOnceEndStreamSent(stream);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it("waits while flow control holds a separate END_STREAM frame, and resets once it has left", async () => {
    const client = await RawHttp2Client.connect(port);
    try {
      const bulk = client.open("/bulk", {}, Buffer.alloc(0), true);
      await client.until(() => client.ended(bulk));
      expect(client.window).toBe(0);
      const unread = client.open("/late-end", {}, Buffer.alloc(10), false);
      await client.until(() => client.framesOf(unread).some((f) => f.type === HEADERS));
      // Room for the chunk only: its DATA frame goes, the END_STREAM after it cannot.
      client.openWindow(100);
      await client.until(() => client.dataBytes(unread) === 100);
      await new Promise((resolve) => setTimeout(resolve, 10 * LATE_END_MS));
      expect(client.framesOf(unread)).toEqual([expect.objectContaining({ type: HEADERS }), { type: DATA, flags: 0, length: 100 }]);
      client.openWindow(1);
      await client.until(() => client.resetCode(unread) !== undefined);
      expect(client.framesOf(unread).slice(1)).toEqual([
        { type: DATA, flags: 0, length: 100 },
        { type: DATA, flags: END_STREAM, length: 0 },
        { type: RST_STREAM, flags: 0, length: 4 },
      ]);
      expect(client.resetCode(unread)).toBe(http2.constants.NGHTTP2_NO_ERROR);
    } finally {
      client.close();
    }
  });
});
