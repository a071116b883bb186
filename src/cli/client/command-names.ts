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
