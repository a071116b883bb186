import type { Logger } from "../../src/runtime/index.js";

/** One line a {@link recordingLogger} was told. */
export interface RecordedLogLine {
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

/** A logger that keeps what it is told, for tests that assert what a backend logs (through `attach`). */
export function recordingLogger(): Logger & { lines: RecordedLogLine[] } {
  const lines: RecordedLogLine[] = [];
  const at =
    (level: string) =>
    (message: string, fields: Record<string, unknown> = {}) => {
      lines.push({ level, message, fields });
    };
  return { lines, info: at("info"), warn: at("warn"), error: at("error") };
}
