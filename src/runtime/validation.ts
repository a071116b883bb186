import type { GenEnum } from "@bufbuild/protobuf/codegenv2";
import { BusyPolicySchema, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import type { SendInputRequest } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import type { Input } from "../../gen/worker_runtime/v1/worker_pb.js";
import { invalidArgument, limitExceeded } from "./errors.js";

/** Ids of runtimes, workers and runs: short, printable, safe in paths and URLs. */
const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** Idempotency keys: printable ASCII without spaces. */
const REQUEST_ID_PATTERN = /^[\x21-\x7e]{1,128}$/;
/** Label keys, Kubernetes-like. */
const LABEL_KEY_PATTERN = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;

/** Checks an id field (runtime, worker, run). */
export function checkId(field: string, value: string): string {
  if (value === "") throw invalidArgument(field, "is required");
  if (!ID_PATTERN.test(value) || value === "." || value === "..") {
    throw invalidArgument(field, "must be 1-64 characters of [A-Za-z0-9._-]");
  }
  return value;
}

/** Checks a WorkerRef's presence and shape (not whether it is ours). */
export function checkWorkerRef(field: string, ref: WorkerRef | undefined): WorkerRef {
  if (ref === undefined) throw invalidArgument(field, "is required");
  checkId(`${field}.runtime_id`, ref.runtimeId);
  checkId(`${field}.worker_id`, ref.workerId);
  return ref;
}

/** Checks an optional idempotency key ("" = none). */
export function checkRequestId(field: string, value: string): string {
  if (value !== "" && !REQUEST_ID_PATTERN.test(value)) {
    throw invalidArgument(field, "must be 1-128 printable ASCII characters without spaces");
  }
  return value;
}

/**
 * In a `u` regex a surrogate pair is one code point, so this matches only a
 * lone surrogate: what JSON can spell ("\ud800") but UTF-8, and so a
 * protobuf string, cannot hold.
 */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * Checks a text field's UTF-8 size, and that it is Unicode text at all: a
 * lone surrogate (only Connect JSON can send one; the binary protocols
 * refuse bad UTF-8 while decoding) would be stored as U+FFFD, silently
 * changing what the client sent.
 */
export function checkTextBytes(field: string, value: string, maxBytes: number): string {
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > maxBytes) throw limitExceeded(field, maxBytes, `is ${bytes} bytes; at most ${maxBytes} allowed`);
  return checkUnicodeText(field, value);
}

/** Checks that a text field is Unicode text: no lone surrogate (see checkTextBytes). */
export function checkUnicodeText(field: string, value: string): string {
  if (LONE_SURROGATE.test(value)) throw invalidArgument(field, "is not valid Unicode text (it holds a lone UTF-16 surrogate)");
  return value;
}

/** C0 and C1 control characters and DEL: nothing an id needs, and what would garble a log line or a terminal. */
const CONTROL_CHARACTER = /\p{Cc}/u;

/**
 * Checks a tool call id (ResolveApproval): the provider chooses its shape,
 * so any printable text up to `maxLength` characters, but no control
 * character or lone surrogate, since errors and logs quote it.
 */
export function checkToolCallId(field: string, value: string, maxLength: number): string {
  if (value === "" || value.length > maxLength) throw invalidArgument(field, `must be 1-${maxLength} characters`);
  if (CONTROL_CHARACTER.test(value)) throw invalidArgument(field, "must not hold control characters");
  return checkUnicodeText(field, value);
}

/** Bidirectional override and isolate controls (U+202A-U+202E, U+2066-U+2069): they make a name read as another. */
const BIDI_CONTROL = /[\u202A-\u202E\u2066-\u2069]/u;
/** Control characters other than a tab or a line feed: what a multi-line description may not hold. */
const PROSE_CONTROL = /[^\P{Cc}\t\n]/u;

/**
 * Checks a short identifying text (a worker's display_name, intent, a label
 * value): its size (checkTextBytes), and no control character or
 * bidirectional override or isolate control, since lists, logs and
 * terminals show it as the worker's name (an ESC paints a terminal, U+202E
 * turns "exe.txt" around). With `lines` (intent, a description), tabs and
 * line feeds are text.
 */
export function checkIdentifyingText(field: string, value: string, maxBytes: number, options: { lines?: boolean } = {}): string {
  checkTextBytes(field, value, maxBytes);
  const control = options.lines === true ? PROSE_CONTROL : CONTROL_CHARACTER;
  if (control.test(value)) {
    throw invalidArgument(field, `must not hold control characters${options.lines === true ? " other than tabs and line feeds" : ""}`);
  }
  if (BIDI_CONTROL.test(value))
    throw invalidArgument(field, "must not hold bidirectional override or isolate controls (U+202A-U+202E, U+2066-U+2069)");
  return value;
}

/**
 * Checks a labels map's bounds: count, key shape and value size. Enough
 * for a label selector (ListWorkers), which may name any value a stored
 * worker can have: CreateWorker refuses control and bidi characters in
 * values (catalog.ts checks them as identifying text), but workers stored before that rule keep
 * theirs, and a selector refused them could never select those workers.
 */
export function checkLabels(field: string, labels: Record<string, string>, maxLabels: number, maxValueBytes: number): void {
  const keys = Object.keys(labels);
  if (keys.length > maxLabels) throw limitExceeded(field, maxLabels, `has ${keys.length} labels; at most ${maxLabels}`);
  for (const key of keys) {
    if (!LABEL_KEY_PATTERN.test(key)) {
      throw invalidArgument(`${field}[${JSON.stringify(key.slice(0, 70))}]`, "key must be 1-63 characters of [a-z0-9._-]");
    }
    checkTextBytes(`${field}[${key}]`, labels[key] ?? "", maxValueBytes);
  }
}

/**
 * Resolves a page size: 0 = default, over max = clamped, negative = invalid
 * (the project-wide pagination rule).
 */
export function resolvePageSize(field: string, pageSize: number, defaultSize: number, maxSize: number): number {
  if (!Number.isInteger(pageSize) || pageSize < 0) throw invalidArgument(field, "must not be negative");
  if (pageSize === 0) return Math.min(defaultSize, maxSize);
  return Math.min(pageSize, maxSize);
}

/**
 * Checks a repeated enum filter (e.g. ListWorkers' statuses): every value
 * known, and no more entries than the enum has values. A longer list can
 * only repeat itself, and every entry costs a comparison per item listed:
 * a message full of them made one ListWorkers call scan workers × entries.
 */
export function checkEnumList<E extends number>(field: string, values: readonly E[], schema: GenEnum<E>): void {
  const max = schema.values.length;
  if (values.length > max) throw limitExceeded(field, max, `has ${values.length} entries; at most ${max} (one per value)`);
  for (const [i, value] of values.entries()) checkEnum(`${field}[${i}]`, value, schema);
}

/**
 * Checks that an enum value is one the generated descriptor knows (protobuf
 * keeps unknown numbers). With `required`, the zero (UNSPECIFIED) value is
 * refused too.
 */
export function checkEnum<E extends number>(field: string, value: E, schema: GenEnum<E>, options: { required?: boolean } = {}): E {
  const known = schema.values.some((v) => v.number === value) && !(options.required === true && value === 0);
  if (!known) throw invalidArgument(field, `unknown value ${value}`);
  return value;
}

/**
 * SendInput's and StreamInput's own fields (the input, its busy policy and
 * request_id), checked before anything is taken (a run, a watch slot).
 */
export function checkInput(request: Pick<SendInputRequest, "input" | "busyPolicy" | "requestId">, maxInputBytes: number): Input {
  const { input } = request;
  if (!input) throw invalidArgument("input", "is required");
  if (input.text === "") throw invalidArgument("input.text", "is required");
  checkTextBytes("input.text", input.text, maxInputBytes);
  checkEnum("busy_policy", request.busyPolicy, BusyPolicySchema);
  checkRequestId("request_id", request.requestId);
  return input;
}
