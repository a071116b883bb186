/**
 * What to say instead of `util.parseArgs`'s "argument is ambiguous ... use
 * '--tail=-XYZ'", which it throws when a string flag's value starts with a
 * dash (`--tail -1`, or a forgotten value before the next flag): the CLI's
 * own sentence, naming the flag and the value it was given. Undefined for
 * any other error.
 */
export function ambiguousValueMessage(error: unknown, argv: readonly string[]): string | undefined {
  if (!(error instanceof TypeError) || !("code" in error) || error.code !== "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") return undefined;
  const flag = /^Option '(-{1,2}[^' ]+)' argument is ambiguous/.exec(error.message)?.[1];
  if (flag === undefined) return undefined;
  // The occurrence parseArgs refused: the one followed by a dash (a flag given twice has another).
  const at = argv.findIndex((arg, i) => arg === flag && argv[i + 1]?.startsWith("-"));
  const next = argv[at + 1] ?? "";
  if (/^-\d/.test(next)) return `${flag} must not be negative (got ${next.slice(0, 32)})`;
  return `${flag} needs a value (the next argument, ${next.slice(0, 64)}, is a flag)`;
}
