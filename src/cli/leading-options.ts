import { CLIENT_COMMAND_NAMES, CLIENT_GROUP_NAMES, LEADING_OPTION_NAMES } from "./client/command-names.js";

/** A command line put in the order the commands parse, or why it cannot be. */
export type ReorderedCommandLine = { argv: string[] } | { error: string };

/**
 * Moves the client's global options typed before the command (`worker-runtime
 * --server URL workers list`, as kubectl and crictl take them) to just after
 * the command word(s), where each command parses them. They go there rather
 * than at the end so that a `--` ending the options (`send W -- -text`) still
 * ends them. Anything else before the command is refused with a line naming it.
 */
export function commandFirst(argv: readonly string[]): ReorderedCommandLine {
  const leading: string[] = [];
  let index = 0;
  while (index < argv.length && (argv[index] as string).startsWith("-")) {
    const token = argv[index] as string;
    const name = token.slice(2).split("=", 1)[0] as string;
    if (!token.startsWith("--") || !LEADING_OPTION_NAMES.includes(name)) {
      const allowed = LEADING_OPTION_NAMES.map((option) => `--${option}`);
      return {
        error: `"${token}" before the command: only ${allowed.slice(0, -1).join(", ")} and ${allowed.at(-1)} may come first (worker-runtime [global options] <command> [options])`,
      };
    }
    if (token.includes("=")) {
      leading.push(token);
      index += 1;
      continue;
    }
    const value = argv[index + 1];
    if (value === undefined) return { error: `${token} needs a value before the command` };
    leading.push(token, value);
    index += 2;
  }
  const command = argv[index];
  if (command === undefined) return { error: "a command must follow the global options" };
  if (!CLIENT_COMMAND_NAMES.includes(command)) {
    return command === "serve" || command === "backend"
      ? { error: `"${command}" takes its own options, not the client's global ones: put them after it` }
      : { error: `unknown command "${command}"` };
  }
  // A group's second word must stay second (`workers list`); a missing one is the group's own usage message.
  const next = argv[index + 1];
  const words = CLIENT_GROUP_NAMES.includes(command) && next !== undefined && !next.startsWith("-") ? 2 : 1;
  const afterWords = index + words;
  return { argv: [...argv.slice(index, afterWords), ...leading, ...argv.slice(afterWords)] };
}
