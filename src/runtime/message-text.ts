import { type DescField, type DescMessage, type MessageShape, ScalarType } from "@bufbuild/protobuf";
import { checkUnicodeText } from "./validation.js";

/**
 * Checks every string of a message (nested messages, lists, map keys and
 * values, oneofs) with the text rule requests keep (`checkUnicodeText`: no
 * lone surrogate), naming the first bad one by its proto path under `path`.
 * Why: for a request whose strings have no field-by-field check of their own
 * (a config bundle's profiles and policies), an embedder's lone surrogate
 * otherwise surfaced as protobuf-es's untyped error from an encoder, or was
 * stored and broke every later read of it.
 */
export function checkWellFormedText<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>, path: string): void {
  walk(schema, message as unknown as Record<string, unknown>, path);
}

function walk(desc: DescMessage, message: Record<string, unknown>, path: string): void {
  for (const field of desc.fields) {
    let value: unknown;
    if (field.oneof) {
      const oneof = message[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
      if (oneof?.case !== field.localName) continue;
      value = oneof.value;
    } else {
      value = message[field.localName];
    }
    if (value !== undefined && value !== null) checkField(field, value, `${path}.${field.name}`);
  }
}

function checkField(field: DescField, value: unknown, path: string): void {
  switch (field.fieldKind) {
    case "message":
      walk(field.message, value as Record<string, unknown>, path);
      return;
    case "list":
      for (const [i, item] of (value as unknown[]).entries()) {
        if (field.listKind === "message") walk(field.message, item as Record<string, unknown>, `${path}[${i}]`);
        else if (field.listKind === "scalar" && field.scalar === ScalarType.STRING) checkUnicodeText(`${path}[${i}]`, item as string);
      }
      return;
    case "map":
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        if (field.mapKey === ScalarType.STRING) checkUnicodeText(`${path} key`, key);
        const at = `${path}[${JSON.stringify(key.slice(0, 70))}]`;
        if (field.mapKind === "message") walk(field.message, item as Record<string, unknown>, at);
        else if (field.mapKind === "scalar" && field.scalar === ScalarType.STRING) checkUnicodeText(at, item as string);
      }
      return;
    case "scalar":
      if (field.scalar === ScalarType.STRING) checkUnicodeText(path, value as string);
      return;
    default:
      return;
  }
}
