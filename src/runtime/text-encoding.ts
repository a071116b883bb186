import { configureTextEncoding } from "@bufbuild/protobuf/wire";

/**
 * protobuf-es decodes strings with a default `TextDecoder`, which strips a
 * leading U+FEFF (byte-order mark): a string field beginning with one lost
 * it whenever it was read from binary protobuf (gRPC, Connect+proto, the
 * file store) while JSON kept it. A BOM is content in a protobuf string, so
 * decoding keeps it here (`ignoreBOM: true`). protobuf-es offers only this
 * process-wide hook (fromBinary takes no decoder), so it is installed once,
 * when the core is loaded; encoding and UTF-8 checking are unchanged.
 */
export function keepByteOrderMarks(): void {
  const encoder = new TextEncoder();
  const lenient = new TextDecoder("utf-8", { ignoreBOM: true });
  const strict = new TextDecoder("utf-8", { ignoreBOM: true, fatal: true });
  configureTextEncoding({
    encodeUtf8: (text) => encoder.encode(text),
    decodeUtf8: (bytes, strictUtf8) => (strictUtf8 ? strict : lenient).decode(bytes),
    checkUtf8: (text) => {
      try {
        encodeURIComponent(text);
        return true;
      } catch {
        return false;
      }
    },
  });
}
