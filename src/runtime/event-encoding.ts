import { ScalarType, type DescMessage } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { Buffer } from "node:buffer";
import {
  RuntimeEventSchema,
  type RuntimeEvent,
  ReasoningDeltaSchema,
  TextDeltaSchema,
  ToolCallDeltaSchema,
  WorkerEventSchema,
  type WorkerEvent,
} from "../../gen/worker_runtime/v1/events_pb.js";
import { encodeDurableEvent, envelopeLayout } from "./durable-event-encoding.js";
import { createMessageEncoder } from "./message-encoder.js";
import { varintSize, writeVarint } from "./varint.js";

/**
 * Encodes a WorkerEvent once for storage and the wire (the `encode` of a
 * worker's event stream). Live deltas are the bulk of a busy stream, and
 * protobuf-es's reflective encoder spends microseconds on each one, mostly
 * in TextEncoder on short strings; on a 2-core host that alone kept watch
 * throughput under 3x the per-message baseline. A delta holds only string
 * fields and no seq, cursor or time, so it is written directly here.
 * Output is byte-identical to toBinary (fields in number order, empty
 * strings omitted, checked by test/runtime/event-encoding.test.ts).
 * Durable events (and any other message-typed kind) go through
 * durable-event-encoding.ts; what neither covers goes through the planned
 * encoder (message-encoder.ts), and from there any message carrying unknown
 * fields through toBinary.
 */
export function encodeWorkerEvent(event: WorkerEvent): Uint8Array {
  const kind = event.kind;
  if (event.$typeName === WORKER_EVENT && event.seq === 0n && event.cursor === "" && event.time === undefined && !hasUnknown(event)) {
    const layout = DELTA_LAYOUTS.get(kind.case);
    if (layout && kind.value && kind.value.$typeName === layout.typeName && !hasUnknown(kind.value)) {
      let strings: unknown[] | undefined;
      switch (kind.case) {
        case "textDelta":
        case "reasoningDelta":
          strings = [kind.value.runId, kind.value.blockId, kind.value.text];
          break;
        case "toolCallDelta": {
          const v = kind.value;
          strings = [v.runId, v.blockId, v.toolCallId, v.toolName, v.argumentsDelta];
          break;
        }
        default:
          break;
      }
      // A value that is no string (only an untyped caller makes one) is left to toBinary, which converts it.
      if (strings?.every((s) => typeof s === "string")) return stringsMessage(layout, strings as string[]);
    }
  }
  return encodeDurableEvent(WORKER_EVENT_LAYOUT, event) ?? encodeWorkerEventMessage(event);
}

const WORKER_EVENT = WorkerEventSchema.typeName;

/** Encodes a RuntimeEvent once for storage and the wire (the `encode` of the runtime-wide stream); see durable-event-encoding.ts. */
export function encodeRuntimeEvent(event: RuntimeEvent): Uint8Array {
  return encodeDurableEvent(RUNTIME_EVENT_LAYOUT, event) ?? encodeRuntimeEventMessage(event);
}

/** What neither hand-written path covers: the planned encoder, which leaves what it does not plan to toBinary. */
const encodeWorkerEventMessage = createMessageEncoder(WorkerEventSchema);
const encodeRuntimeEventMessage = createMessageEncoder(RuntimeEventSchema);
const WORKER_EVENT_LAYOUT = envelopeLayout(WorkerEventSchema);
const RUNTIME_EVENT_LAYOUT = envelopeLayout(RuntimeEventSchema);

/** Where a delta sits in WorkerEvent, and the numbers of its string fields in the order passed. */
interface DeltaLayout {
  typeName: string;
  outerTag: number;
  fieldTags: readonly number[];
}

/**
 * Field numbers come from the generated schemas, so a renumbering in the
 * proto cannot silently produce wrong bytes; a layout is only used when
 * every inner tag fits in one byte, as written below.
 */
const DELTA_LAYOUTS: ReadonlyMap<string | undefined, DeltaLayout> = new Map(
  [
    layout("textDelta", TextDeltaSchema, ["runId", "blockId", "text"]),
    layout("reasoningDelta", ReasoningDeltaSchema, ["runId", "blockId", "text"]),
    layout("toolCallDelta", ToolCallDeltaSchema, ["runId", "blockId", "toolCallId", "toolName", "argumentsDelta"]),
  ].flatMap((entry) => (entry ? [entry] : [])),
);

type DeltaCase = "textDelta" | "reasoningDelta" | "toolCallDelta";

function layout(oneofCase: DeltaCase, schema: DescMessage, fieldNames: readonly string[]): [DeltaCase, DeltaLayout] | undefined {
  const outer = WorkerEventSchema.field[oneofCase];
  const numbers = fieldNames.map((name) => schema.fields.find((field) => field.localName === name));
  if (!outer || schema.fields.length !== fieldNames.length) return undefined;
  const fieldTags: number[] = [];
  for (const field of numbers) {
    if (!field || field.fieldKind !== "scalar" || field.scalar !== ScalarType.STRING || field.number >= 16) return undefined;
    fieldTags.push((field.number << 3) | WireType.LengthDelimited);
  }
  return [oneofCase, { typeName: schema.typeName, outerTag: (outer.number << 3) | WireType.LengthDelimited, fieldTags }];
}

function hasUnknown(message: { $unknown?: unknown[] }): boolean {
  return (message.$unknown?.length ?? 0) > 0;
}

/** The WorkerEvent holding a delta whose string fields are `strings` (in layout order). */
function stringsMessage(layout: DeltaLayout, strings: readonly string[]): Uint8Array {
  const lengths = strings.map((s) => Buffer.byteLength(s, "utf8"));
  let inner = 0;
  for (const length of lengths) if (length > 0) inner += 1 + varintSize(length) + length;
  const out = Buffer.allocUnsafe(varintSize(layout.outerTag) + varintSize(inner) + inner);
  let pos = writeVarint(out, 0, layout.outerTag);
  pos = writeVarint(out, pos, inner);
  for (let i = 0; i < strings.length; i++) {
    const length = lengths[i] as number;
    if (length === 0) continue;
    out[pos++] = layout.fieldTags[i] as number;
    pos = writeVarint(out, pos, length);
    pos += out.write(strings[i] as string, pos, length, "utf8");
  }
  return out;
}
