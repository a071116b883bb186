/**
 * A command line the user must fix (exit 2). The client has its own rather
 * than serve's UsageError so that its commands never load serve.ts and,
 * through it, the server, the file store and the model client.
 */
export class CommandLineError extends Error {
  override readonly name = "CommandLineError";
}

/** Whether `error` is a command-line mistake: ours, or one `util.parseArgs` found. */
export function isCommandLineError(error: unknown): error is Error {
  return (
    error instanceof CommandLineError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))
  );
}
