import { ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema } from "../../../gen/worker_runtime/v1/errors_pb.js";

/**
 * Which request field each command-line word fills: a flag ("--from") or an
 * argument's name ("worker"). Keys are field paths as the runtime names
 * them in its errors (`after_cursor`, `workspace.root`, `labels`).
 */
export type FieldFlags = Readonly<Record<string, string>>;

/** Fields every command that names a runtime or a worker fills. */
export const COMMON_FIELDS: FieldFlags = {
  runtime_id: "--runtime",
  "worker.runtime_id": "--runtime",
  worker_id: "worker",
  "worker.worker_id": "worker",
};

/**
 * The server's error with the field it names replaced by what the user
 * typed: "after_cursor: is not a cursor" becomes "--from: is not a
 * cursor". The server stays the only judge of what is valid (the client
 * copies no rules, so the two cannot disagree); this only translates its
 * words. The field comes from the ErrorDetail's metadata ("field", or for
 * NOT_FOUND the key naming the id), never from guessing at the text.
 */
export function namedByFlag(error: ConnectError, flags: FieldFlags): ConnectError {
  const detail = error.findDetails(ErrorDetailSchema)[0];
  if (detail === undefined) return error;
  const message = error.rawMessage;
  const field = detail.metadata.field ?? Object.keys(detail.metadata).find((key) => message.startsWith(`${key} `));
  if (field === undefined || !message.startsWith(field)) return error;
  const renamed = rename(field, { ...COMMON_FIELDS, ...flags });
  if (renamed === undefined) return error;
  const translated = new ConnectError(`${renamed}${message.slice(field.length)}`, error.code, error.metadata, undefined, error.cause);
  translated.details = error.details;
  return translated;
}

/**
 * A field path in the user's words: an entry of a map field keeps its key
 * (`labels["Bad"]` is `--label "Bad"`), an index into a list is dropped
 * (the error quotes the value, and the user typed no index).
 */
function rename(field: string, flags: FieldFlags): string | undefined {
  const exact = flags[field];
  if (exact !== undefined) return exact;
  const item = /^([^[]+)\[(.*)\]$/.exec(field);
  if (item === null) return undefined;
  const [, list = "", key = ""] = item;
  const flag = flags[list];
  if (flag === undefined) return undefined;
  if (/^\d+$/.test(key)) return flag;
  return `${flag} ${key.startsWith('"') ? key : JSON.stringify(key)}`;
}
