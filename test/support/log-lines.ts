import type { DestinationStream } from "pino";

/** A log line as the CLI's logger writes it, parsed. */
export type LogLine = Record<string, unknown> & { level: string; message: string };

/** A pino destination that keeps every line, parsed (each must be one JSON object). */
export function logCapture(): { destination: DestinationStream; lines: LogLine[]; raw: string[] } {
  const lines: LogLine[] = [];
  const raw: string[] = [];
  return {
    lines,
    raw,
    destination: {
      write(text: string) {
        raw.push(text);
        lines.push(JSON.parse(text) as LogLine);
      },
    },
  };
}

/** Parses a process's stderr as JSON lines; throws on a line that is not a JSON object. */
export function parseLogLines(stderr: string): LogLine[] {
  return stderr
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed !== "object" || parsed === null || !("level" in parsed) || !("message" in parsed)) {
        throw new Error(`not a log line: ${line}`);
      }
      return parsed as LogLine;
    });
}
