import { ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../../../gen/worker_runtime/v1/errors_pb.js";

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
  const named = flagOf(error, flags);
  if (named === undefined) return error;
  const rest = error.rawMessage.slice(named.field.length);
  // A word that is prose ("the text") starts a sentence: "the text is more than ...", not "the text: is ...".
  const prose = !named.word.startsWith("-") && named.word.includes(" ");
  const translated = new ConnectError(
    `${named.word}${prose ? rest.replace(/^: /, " ") : rest}`,
    error.code,
    error.metadata,
    undefined,
    error.cause,
  );
  translated.details = error.details;
  return translated;
}

/**
 * The word of the command line (`word`: a flag, or an argument's name) that
 * filled the request field the server's error names and starts its message
 * with (`field`), if the command has one for it.
 */
export function flagOf(error: ConnectError, flags: FieldFlags): { field: string; word: string } | undefined {
  const detail = error.findDetails(ErrorDetailSchema)[0];
  if (detail === undefined) return undefined;
  const message = error.rawMessage;
  const field = detail.metadata.field ?? Object.keys(detail.metadata).find((key) => message.startsWith(`${key} `));
  if (field === undefined || !message.startsWith(field)) return undefined;
  const word = rename(field, { ...COMMON_FIELDS, ...flags });
  return word === undefined ? undefined : { field, word };
}

/**
 * Whether the server refused a value the user typed: INVALID_ARGUMENT about
 * a field a word of the command line filled. That is a bad command line
 * (exit 2), as when the client refuses a value itself; only who checked it
 * differs. A refusal for another reason (a limit, the worker's state) is not.
 */
export function refusesCommandLine(error: ConnectError, flags: FieldFlags): boolean {
  const reason = error.findDetails(ErrorDetailSchema)[0]?.reason;
  return reason === ErrorReason.INVALID_ARGUMENT && flagOf(error, flags) !== undefined;
}

/**
 * A field path in the user's words: an entry of a map field keeps its key
 * (`labels["Bad"]` is `--label "Bad"`), an index into a list is dropped
 * (the error quotes the value, and the user typed no index), and a part of
 * a list's item says which of the repeated flags it is (`mounts[1].name`
 * is `--mount #2 name`: that error does not quote the value).
 */
function rename(field: string, flags: FieldFlags): string | undefined {
  const exact = flags[field];
  if (exact !== undefined) return exact;
  const item = /^([^[]+)\[(.*)\](?:\.([a-z_]+))?$/.exec(field);
  if (item === null) return undefined;
  const [, list = "", key = "", part] = item;
  const flag = flags[list];
  if (flag === undefined) return undefined;
  if (/^\d+$/.test(key)) return part === undefined ? flag : `${flag} #${Number(key) + 1} ${part}`;
  return part === undefined ? `${flag} ${key.startsWith('"') ? key : JSON.stringify(key)}` : undefined;
}
