/**
 * Whether a call's client reads binary protobuf (gRPC, gRPC-Web,
 * Connect+proto) rather than JSON, by its request's content type: watches
 * send binary clients their events pre-encoded, as unknown fields of the
 * response (src/runtime/wire-batch.ts), which JSON cannot carry. Media types
 * are case-insensitive, and connect-node serves "application/connect+JSON"
 * as JSON; matched case-sensitively, such a client was sent pre-encoded
 * batches and saw them empty (test/server/json-content-type.test.ts).
 */
export function isBinaryRequest(requestHeader: Headers): boolean {
  return !(requestHeader.get("content-type") ?? "").toLowerCase().includes("json");
}
