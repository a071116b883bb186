import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkerSchema, WorkerStatus } from "../../../gen/worker_runtime/v1/worker_pb.js";
import { createFileStore } from "../../../src/store/fs/index.js";
import { reply } from "../../support/openai-chunks.js";
import { runClient, runInTerminal, serveRuntime, type ServedRuntime } from "./client-support.js";

/**
 * The same command looks different to a person and to a pipe: through a
 * pseudo-terminal (util-linux `script`) it prints a table with a header and
 * colours; piped it prints plain tab-separated lines, and NO_COLOR keeps the
 * table but drops the colours.
 */

let rt: ServedRuntime;
const ESC = "\u001b[";

beforeAll(async () => {
  rt = await serveRuntime({ runtimeId: "rt-tty" });
  for (const team of ["red", "blue"]) {
    await rt.clients.catalog.createWorker({
      runtimeId: rt.runtimeId,
      profile: { source: { case: "builtin", value: "companion" } },
      labels: { team },
    });
  }
});

afterAll(async () => {
  await rt?.close();
});

/** Runs the CLI under `script`, so its stdout is a terminal; returns what the terminal showed. */
function inTerminal(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | null; screen: string }> {
  return runInTerminal(args, { WORKER_RUNTIME_SERVER: rt.url, ...env });
}

const HOSTILE_WORKER_ID = "w-hostile";

/**
 * A runtime serving one stored worker with `text` as its name, intent or
 * labels. CreateWorker refuses control and bidi characters in them now
 * (test/runtime/identifying-text.test.ts), but a worker stored before that
 * rule, or shown by another runtime, may still hold them: the CLI escapes
 * what it shows whatever the server sends.
 */
async function servedWithStoredWorker(text: {
  displayName?: string;
  intent?: string;
  labels?: Record<string, string>;
}): Promise<ServedRuntime & { close(): Promise<void> }> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "wr-cli-hostile-"));
  const store = createFileStore({ dataDir });
  await store.open({ runtimeId: "rt-hostile", generateRuntimeId: () => "rt-hostile" });
  const worker = create(WorkerSchema, {
    ref: { runtimeId: "rt-hostile", workerId: HOSTILE_WORKER_ID },
    status: WorkerStatus.IDLE,
    profile: { source: { case: "builtin", value: "companion" } },
    createdAt: timestampNow(),
    updatedAt: timestampNow(),
    ...text,
  });
  await store.putWorker({ worker, createRequestId: "", createFingerprint: "" });
  await store.close();
  const served = await serveRuntime({ dataDir, runtimeId: "rt-hostile" });
  return {
    ...served,
    async close() {
      await served.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

describe("terminal and pipe", () => {
  it("a terminal gets a coloured table; a pipe gets plain lines", async () => {
    const tty = await inTerminal(["workers", "list"]);
    expect(tty.code).toBe(0);
    const lines = tty.screen.trimEnd().split("\n");
    expect(lines).toHaveLength(3);
    // A bold header row, then one row per worker with the status in green.
    expect(lines[0]?.startsWith(`${ESC}1mWORKER`)).toBe(true);
    for (const header of ["STATUS", "PROFILE", "CONNECTIVITY", "LABELS"]) expect(lines[0]).toContain(header);
    expect(lines[1]).toContain(`${ESC}32mIDLE`);
    expect(tty.screen).not.toContain("\t");
    // Columns line up: each row's status starts where the header's STATUS does.
    const plain = lines.map((line) => line.replace(new RegExp(`${ESC.replace("[", "\\[")}\\d+m`, "g"), ""));
    const statusColumn = plain[0]?.indexOf("STATUS");
    expect(plain[1]?.indexOf("IDLE")).toBe(statusColumn);
    expect(plain[2]?.indexOf("IDLE")).toBe(statusColumn);

    const piped = await runClient(["workers", "list"], { server: rt.url });
    expect(piped.code).toBe(0);
    expect(piped.stdout).not.toContain(ESC);
    expect(piped.stdout).not.toContain("WORKER");
    const rows = piped.stdout.trimEnd().split("\n");
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row.split("\t")[1]).toBe("IDLE");
  });

  it("NO_COLOR keeps the table and drops the colours", async () => {
    const tty = await inTerminal(["workers", "list"], { NO_COLOR: "1" });
    expect(tty.code).toBe(0);
    expect(tty.screen).not.toContain(ESC);
    expect(tty.screen).toMatch(/^WORKER\s+STATUS\s+PROFILE/);
  });

  it("a value with tabs, line breaks, escape codes or bidi overrides stays in its cell: one line per row, escaped, on a terminal and piped", async () => {
    const stored = await servedWithStoredWorker({
      labels: { note: "two\tcells\nand a line\u001b[31m \u202Eexe.txt" },
      displayName: "Coder ünï\tbis",
    });
    const id = HOSTILE_WORKER_ID;
    try {
      const piped = await runClient(["workers", "list"], { server: stored.url });
      expect(piped.code).toBe(0);
      const rows = piped.stdout.trimEnd().split("\n");
      expect(rows).toHaveLength(1);
      // Every row the same eight columns, as runtimes list's rows are; the name is the last (added last, so positions held).
      for (const row of rows) expect(row.split("\t")).toHaveLength(8);
      expect(rows.find((row) => row.startsWith(id))?.split("\t")[5]).toBe("note=two\\tcells\\nand a line\\u001b[31m \\u202eexe.txt");
      expect(rows.find((row) => row.startsWith(id))?.split("\t")[7]).toBe("Coder ünï\\tbis");
      expect(piped.stdout).not.toContain("\u202E");
      const tty = await runInTerminal(["workers", "list"], { WORKER_RUNTIME_SERVER: stored.url, NO_COLOR: "1" });
      const lines = tty.screen.trimEnd().split("\n");
      expect(lines).toHaveLength(2);
      expect(tty.screen).not.toContain("\u001b[31m");
      expect(tty.screen).not.toContain("\u202E");
      expect(lines.find((line) => line.startsWith(id))).toContain("note=two\\tcells\\nand a line\\u001b[31m \\u202eexe.txt");
      expect(lines[0]).toMatch(/\bCREATED\s+NAME$/);
      expect(lines.find((line) => line.startsWith(id))).toMatch(/Coder ünï\\tbis$/);
    } finally {
      await stored.close();
    }
  });

  it("key/value output (workers get) escapes a value's tabs, line breaks, escape codes and bidi overrides as table cells do; JSON keeps them", async () => {
    const hostile = "two\tcells\nand a line\u001b[31m \u2066x\u202Eexe.txt";
    const escaped = "two\\tcells\\nand a line\\u001b[31m \\u2066x\\u202eexe.txt";
    const stored = await servedWithStoredWorker({ displayName: hostile, intent: hostile, labels: { note: hostile } });
    const id = HOSTILE_WORKER_ID;
    try {
      const piped = await runClient(["workers", "get", id], { server: stored.url });
      expect(piped.code).toBe(0);
      const lines = piped.stdout.trimEnd().split("\n");
      // One line per field, every line a "key: value".
      for (const line of lines) expect(line).toMatch(/^[a-z ]+: /);
      expect(lines).toContain(`name: ${escaped}`);
      expect(lines).toContain(`intent: ${escaped}`);
      expect(lines).toContain(`labels: note=${escaped}`);
      expect(piped.stdout).not.toContain("\u001b");
      expect(piped.stdout).not.toContain("\u202E");
      const tty = await runInTerminal(["workers", "get", id], { WORKER_RUNTIME_SERVER: stored.url });
      expect(tty.code).toBe(0);
      expect(tty.screen).not.toContain("\u001b[31m");
      expect(tty.screen).toContain(`note=${escaped}`);
      // The status is still painted: escaping applies to values, not to the CLI's own colours.
      expect(tty.screen).toContain(`${ESC}32mIDLE`);
      const json = await runClient(["workers", "get", id, "--output", "json"], { server: stored.url });
      expect(JSON.parse(json.stdout).labels).toEqual({ note: hostile });
    } finally {
      await stored.close();
    }
  });

  it("message text reaches a terminal with its control characters shown escaped (line breaks kept), and a pipe as written", async () => {
    const answer = "red\u001b[31m on\u0007 and\u001b]52;c;aGk=\u0007 done\nsecond line";
    const shown = "red\\u001b[31m on\\u0007 and\\u001b]52;c;aGk=\\u0007 done";
    const { worker } = await rt.clients.catalog.createWorker({
      runtimeId: rt.runtimeId,
      profile: { source: { case: "builtin", value: "companion" } },
    });
    const id = worker?.ref?.workerId ?? "";
    try {
      rt.fake.enqueue(reply({ text: answer }));
      const sent = await inTerminal(["send", id, "hi\u001b[2J"], { NO_COLOR: "1" });
      expect(sent.code).toBe(0);
      expect(sent.screen).toContain(shown);
      expect(sent.screen).toContain("second line");
      expect(sent.screen).not.toContain("\u001b");
      expect(sent.screen).not.toContain("\u0007");
      const transcript = await inTerminal(["transcript", id], { NO_COLOR: "1" });
      expect(transcript.screen).toContain(shown);
      expect(transcript.screen).toContain("> hi\\u001b[2J");
      expect(transcript.screen).not.toContain("\u001b");
      const piped = await runClient(["transcript", id], { server: rt.url });
      expect(piped.stdout).toContain(answer);
    } finally {
      await rt.clients.catalog.deleteWorker({ worker: worker?.ref, force: true });
    }
  });

  it("message text reaches a terminal with its bidi override and isolate controls shown escaped, other text (tabs, lines, any script) as written", async () => {
    const answer =
      "file \u202Etxt.exe\u202C and \u2066isolated\u2069\tcol\n\u05e9\u05dc\u05d5\u05dd \u200F\u0639\u0631\u0628\u064a \u8bed\u8a00 \u00fc\u00f1\u00ef";
    const shown = [
      "file \\u202etxt.exe\\u202c and \\u2066isolated\\u2069\tcol",
      "\u05e9\u05dc\u05d5\u05dd \u200F\u0639\u0631\u0628\u064a \u8bed\u8a00 \u00fc\u00f1\u00ef",
    ];
    const bidi = /[\u202A-\u202E\u2066-\u2069]/u;
    const { worker } = await rt.clients.catalog.createWorker({
      runtimeId: rt.runtimeId,
      profile: { source: { case: "builtin", value: "companion" } },
    });
    const id = worker?.ref?.workerId ?? "";
    try {
      rt.fake.enqueue(reply({ text: answer, pieceSize: 3 }));
      const sent = await inTerminal(["send", id, "hi \u202Eyes"], { NO_COLOR: "1" });
      expect(sent.code).toBe(0);
      for (const line of shown) expect(sent.screen).toContain(line);
      expect(sent.screen).not.toMatch(bidi);
      const transcript = await inTerminal(["transcript", id], { NO_COLOR: "1" });
      for (const line of shown) expect(transcript.screen).toContain(line);
      expect(transcript.screen).toContain("> hi \\u202eyes");
      expect(transcript.screen).not.toMatch(bidi);
      const piped = await runClient(["transcript", id], { server: rt.url });
      expect(piped.stdout).toContain(answer);
    } finally {
      await rt.clients.catalog.deleteWorker({ worker: worker?.ref, force: true });
    }
  });

  it("an empty cell of a terminal's table reads -, so no column looks skipped; piped it stays empty", async () => {
    const tty = await inTerminal(["workers", "list"], { NO_COLOR: "1" });
    const [header = "", row = ""] = tty.screen.trimEnd().split("\n");
    // No run in flight: the ACTIVE RUN cell, under its header.
    expect(row.slice(header.indexOf("ACTIVE RUN")).startsWith("- ")).toBe(true);
    const piped = await runClient(["workers", "list"], { server: rt.url });
    expect(piped.stdout.split("\n")[0]?.split("\t")[4]).toBe("");
  });
});
