import { type DescMessage, ScalarType } from "@bufbuild/protobuf";

/**
 * Which message types the planned codecs handle themselves: the client's
 * decoder (src/grpc-client/message-decoder.ts) and the runtime's encoder
 * (message-encoder.ts) follow the same rule, so a type is either planned on
 * both sides or left to protobuf-es on both. A plain type is a proto3 type
 * whose every reachable type is plain: no wrappers or Struct/Value/ListValue
 * (protobuf-es gives them other shapes), no groups or delimited encoding, no
 * closed enums, no default values, no implicit-presence message fields.
 */
export function isPlainMessageType(desc: DescMessage): boolean {
  let known = plainClosures.get(desc);
  if (known === undefined) {
    known = reachableMessageTypes(desc).every(plainType);
    plainClosures.set(desc, known);
  }
  return known;
}

/**
 * What the runtime's planned encoder and clone handle (message-encoder.ts,
 * message-clone.ts): a plain type whose maps, at any depth, have string keys
 * (protobuf-es converts other keys between the object's strings and typed
 * values).
 */
export function isPlannedType(desc: DescMessage): boolean {
  return (
    isPlainMessageType(desc) &&
    reachableMessageTypes(desc).every((type) =>
      type.fields.every((field) => field.fieldKind !== "map" || field.mapKey === ScalarType.STRING),
    )
  );
}

/** `desc` and every message type its fields reach, each once (for closure checks like the one above). */
export function reachableMessageTypes(desc: DescMessage): DescMessage[] {
  const seen = new Set<DescMessage>();
  const pending = [desc];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (seen.has(next)) continue;
    seen.add(next);
    for (const field of next.fields) if (field.message !== undefined) pending.push(field.message);
  }
  return [...seen];
}

/** Whether a message type and every type it reaches are plain, by message type. */
const plainClosures = new WeakMap<DescMessage, boolean>();

// google.protobuf.Edition.EDITION_PROTO3 and FeatureSet.FieldPresence.IMPLICIT, as protobuf-es names them.
const EDITION_PROTO3 = 999;
const IMPLICIT = 2;

/** Well-known types that protobuf-es encodes and decodes like any message (the others have special shapes). */
const PLAIN_WELL_KNOWN = new Set([
  "google.protobuf.Timestamp",
  "google.protobuf.Duration",
  "google.protobuf.Empty",
  "google.protobuf.Any",
  "google.protobuf.FieldMask",
]);

/** A type whose own fields are all plain (the types they reach are checked by the closure). */
function plainType(desc: DescMessage): boolean {
  if (desc.file.edition !== EDITION_PROTO3) return false;
  if (desc.typeName.startsWith("google.protobuf.") && !PLAIN_WELL_KNOWN.has(desc.typeName)) return false;
  for (const field of desc.fields) {
    if ((field as { delimitedEncoding?: boolean }).delimitedEncoding === true) return false;
    if (field.enum !== undefined && !field.enum.open) return false;
    if ((field.fieldKind === "scalar" || field.fieldKind === "enum") && field.getDefaultValue() !== undefined) return false;
    if (field.fieldKind === "message" && field.presence === IMPLICIT) return false;
  }
  return true;
}
