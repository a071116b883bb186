/**
 * Bytes of HTTP/2 for tests that must speak it frame by frame (a client
 * that goes silent, or that controls flow control itself), where Node's
 * client would do its own thing.
 */

/** The connection preface a client sends first (RFC 9113 §3.4). */
export const CLIENT_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** Frame types (RFC 9113 §6). */
export const DATA = 0x0;
export const HEADERS = 0x1;
export const RST_STREAM = 0x3;
export const SETTINGS = 0x4;
export const PING = 0x6;
export const WINDOW_UPDATE = 0x8;
/** Frame flags (RFC 9113 §6): END_STREAM on DATA and HEADERS, END_HEADERS on HEADERS, ACK on SETTINGS and PING. */
export const END_STREAM = 0x1;
export const END_HEADERS = 0x4;
export const ACK = 0x1;

/** An HTTP/2 frame. */
export function http2Frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header.writeUInt8(type, 3);
  header.writeUInt8(flags, 4);
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

/** HPACK "literal header field without indexing, new name" (no Huffman; short strings only). */
export function literalHeaders(headers: Record<string, string>): Buffer {
  return Buffer.concat(
    Object.entries(headers).map(([name, value]) =>
      Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]),
    ),
  );
}

/** A gRPC length-prefixed message (also Connect's and gRPC-Web's envelope); `declaredLength` may lie. */
export function grpcFrame(payload: Uint8Array, flags = 0, declaredLength = payload.length): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(flags, 0);
  header.writeUInt32BE(declaredLength, 1);
  return Buffer.concat([header, payload]);
}
