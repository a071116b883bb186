/**
 * The client's top-level command words, in a file of their own so that
 * main.ts can route to the client without loading it (or serve) first.
 */
export const CLIENT_COMMAND_NAMES: readonly string[] = [
  "runtime",
  "runtimes",
  "workers",
  "send",
  "cancel",
  "approve",
  "reject",
  "watch",
  "transcript",
  "chat",
];

/** The command words that take a second one (`workers list`); the rest take none. */
export const CLIENT_GROUP_NAMES: readonly string[] = ["runtime", "runtimes", "workers"];

/** The client's global options that take a value, which may also come before the command. */
export const LEADING_OPTION_NAMES: readonly string[] = ["server", "token-file", "runtime", "output", "protocol"];
