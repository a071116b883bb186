import { ToolError } from "./tool.js";

/**
 * Characters that mean something to a shell. Under a shell policy a command
 * runs without a shell, so these would silently turn into literal
 * arguments; refusing them says plainly that pipes, redirections, `;`,
 * variables and globs are not available.
 */
const SHELL_SYNTAX = new Set([..."|&;<>()$`*?[]{}~!#\n\r"]);

/**
 * Splits a command line into words the way a shell would for simple
 * commands: whitespace separates, single quotes keep everything, double
 * quotes keep everything but `\"` and `\\`, a backslash outside quotes
 * escapes the next character. Unquoted shell syntax is a tool error.
 */
export function splitCommandWords(command: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < command.length; i++) {
    const char = command[i] ?? "";
    if (char === "'") {
      const end = command.indexOf("'", i + 1);
      if (end < 0) throw new ToolError("the command has an unterminated single quote");
      word += command.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (char === '"') {
      i++;
      for (; i < command.length && command[i] !== '"'; i++) {
        const next = command[i + 1];
        if (command[i] === "\\" && (next === '"' || next === "\\")) i++;
        word += command[i];
      }
      if (i >= command.length) throw new ToolError("the command has an unterminated double quote");
      inWord = true;
    } else if (char === "\\") {
      if (i + 1 >= command.length) throw new ToolError("the command ends with a lone backslash");
      word += command[++i];
      inWord = true;
    } else if (char === " " || char === "\t") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else if (SHELL_SYNTAX.has(char)) {
      throw new ToolError(`shell syntax ("${char === "\n" ? "\\n" : char}") is not allowed for this worker: commands run without a shell`);
    } else {
      word += char;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}
