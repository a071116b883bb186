/** The longest error text a log line carries. */
export const MAX_LOGGED_ERROR_CHARS = 500;
/** The longest model text or tool payload a debug line carries (when payload logging lets it through at all). */
export const MAX_LOGGED_PAYLOAD_CHARS = 2_000;

/**
 * What a log line says about an error without trusting its text: error
 * messages can carry payloads (a provider's error body echoing the prompt,
 * a JSON.parse error quoting tool arguments), so the text goes under
 * `detail`, which the CLI's logger redacts unless payload logging is on.
 * The type, a system error code and the stack frames are always safe and
 * always kept; a Node system error's message (a path, a syscall) is kept as
 * `cause`.
 */
export function errorLogFields(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { detail: bounded(String(error)) };
  const code: unknown = Reflect.get(error, "code");
  const fields: Record<string, unknown> = { error_type: error.name };
  if (typeof code === "string" || typeof code === "number") fields["error_code"] = code;
  if (isSystemError(error)) fields["cause"] = bounded(error.message);
  else fields["detail"] = bounded(error.message);
  const frames = error.stack
    ?.split("\n")
    .filter((line) => line.startsWith("    at "))
    .join("\n");
  if (frames) fields["stack"] = bounded(frames, 4 * MAX_LOGGED_ERROR_CHARS);
  return fields;
}

/** Text cut to at most `max` characters, marked when cut. */
export function bounded(text: string, max = MAX_LOGGED_ERROR_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, max)}…[${text.length - max} more chars]`;
}

/** A Node system error (ENOENT, ECONNRESET, …): its message names a syscall and a path, not a payload. */
function isSystemError(error: Error): boolean {
  return typeof Reflect.get(error, "syscall") === "string" || typeof Reflect.get(error, "errno") === "number";
}
