import type { JsonValue } from "@bufbuild/protobuf";

/** Text styles the human output uses. */
export type Style = "bold" | "dim" | "red" | "green" | "yellow" | "blue" | "magenta" | "cyan";

const SGR: Record<Style, [number, number]> = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  blue: [34, 39],
  magenta: [35, 39],
  cyan: [36, 39],
};

/** Where output goes and how it looks. */
export interface OutputInit {
  /** `--output json`: one JSON object per line, nothing else on stdout. */
  json: boolean;
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

/**
 * Everything a command prints goes through here, so the three looks stay
 * consistent: tables and colours on a terminal, plain tab-separated lines
 * when piped (or no colours with NO_COLOR), and JSON lines for scripts.
 */
export class Output {
  readonly json: boolean;
  /** Padded tables with a header row (stdout is a terminal). */
  readonly tables: boolean;
  /** ANSI colours (a terminal, and neither NO_COLOR nor TERM=dumb). */
  readonly colours: boolean;
  private readonly stdout: NodeJS.WritableStream;
  private readonly stderr: NodeJS.WritableStream;

  constructor(init: OutputInit) {
    this.json = init.json;
    this.stdout = init.stdout;
    this.stderr = init.stderr;
    this.tables = init.stdout.isTTY === true && !init.json;
    const noColor = init.env.NO_COLOR !== undefined && init.env.NO_COLOR !== "";
    this.colours = this.tables && !noColor && init.env.TERM !== "dumb";
  }

  /** Raw text to stdout (streamed deltas). */
  write(text: string): void {
    this.stdout.write(text);
  }

  line(text = ""): void {
    this.stdout.write(`${text}\n`);
  }

  /** One JSON object on its own line. */
  jsonLine(value: JsonValue): void {
    this.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /**
   * Message text (the model's, the user's) as written, but on a terminal
   * with control characters other than line breaks and tabs shown escaped:
   * a model's output must not move the cursor, retitle the window or reach
   * the clipboard (OSC 52); nor, by a bidi override or isolate control,
   * make what follows read as other text, as {@link cellText} escapes them
   * in cells. Every other character (any script, the bidi marks U+200E and
   * U+200F that right-to-left text needs) is kept. Piped, it is written as
   * it came.
   */
  prose(text: string): string {
    return this.tables ? text.replace(PROSE_CONTROL, escapeControl) : text;
  }

  /** A status or progress note: stderr, so stdout stays the command's result. */
  note(text: string): void {
    this.stderr.write(`${text}\n`);
  }

  paint(style: Style, text: string): string {
    if (!this.colours || text === "") return text;
    const [open, close] = SGR[style];
    return `\u001b[${open}m${text}\u001b[${close}m`;
  }

  /**
   * One row of a table as a piped line: its cells tab-separated, each
   * {@link cellText}, so every line has the same columns (commands that
   * print page by page use it; {@link table} does when piped).
   */
  row(cells: readonly string[]): void {
    this.line(cells.map(cellText).join("\t"));
  }

  /**
   * Rows as a padded table with a header on a terminal, else as
   * tab-separated lines without a header (easy to cut and awk).
   * On a terminal an empty cell reads "-", so no column looks skipped.
   * `styles` colours cells after padding, so widths stay right.
   */
  table(
    headers: readonly string[],
    rows: readonly (readonly string[])[],
    styles?: (row: number, column: number) => Style | undefined,
  ): void {
    if (!this.tables) {
      for (const row of rows) this.row(row);
      return;
    }
    const shown = rows.map((row) => row.map((cell) => cellText(cell) || "-"));
    const widths = headers.map((header, column) => Math.max(header.length, ...shown.map((row) => (row[column] ?? "").length)));
    const render = (cells: readonly string[], style: (column: number) => Style | undefined): string =>
      cells
        .map((cell, column) => {
          const padded = column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0);
          const chosen = style(column);
          return chosen ? this.paint(chosen, padded) : padded;
        })
        .join("  ")
        .trimEnd();
    this.line(render(headers, () => "bold"));
    shown.forEach((row, index) => {
      this.line(render(row, (column) => styles?.(index, column)));
    });
  }

  /**
   * "key: value" lines for one resource, keys aligned on a terminal. Each
   * value is {@link cellText}, as a table cell is, so a value holding a line
   * break or escape codes stays on its own line and paints nothing; a value
   * given a style is painted after it is escaped.
   */
  fields(entries: readonly (readonly [key: string, value: string, style?: Style])[]): void {
    const width = Math.max(...entries.map(([key]) => key.length));
    for (const [key, value, style] of entries) {
      const shown = style ? this.paint(style, cellText(value)) : cellText(value);
      this.line(this.tables ? `${this.paint("bold", `${key}:`.padEnd(width + 1))} ${shown}` : `${key}: ${shown}`);
    }
  }
}

/**
 * Control characters (C0, DEL, C1), by their escapes where JSON has one, and
 * the bidirectional override and isolate controls (U+202A-U+202E,
 * U+2066-U+2069), which reorder what follows them in a cell and beyond.
 */
const CONTROL = /[\p{Cc}\u202A-\u202E\u2066-\u2069]/gu;
/** Control characters other than a line break or a tab, and the bidi controls of {@link CONTROL}: what message text may not send a terminal. */
const PROSE_CONTROL = /[^\P{Cc}\n\t]|[\u202A-\u202E\u2066-\u2069]/gu;
const NAMED_ESCAPES: Record<string, string> = { "\t": "\\t", "\n": "\\n", "\r": "\\r" };

/**
 * A value as one table cell: a tab, line break or other control character,
 * or a bidi override (a worker stored before the runtime refused them in
 * names and labels may hold any) is shown escaped (\t, \n, \u001b,
 * \u202e), so it cannot split a piped row into more columns or lines, send
 * a terminal its escape codes, nor make a value read as another.
 */
export function cellText(value: string): string {
  return value.replace(CONTROL, escapeControl);
}

function escapeControl(char: string): string {
  return NAMED_ESCAPES[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;
}
