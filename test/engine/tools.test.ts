import { execFileSync } from "node:child_process";
import { promises } from "node:fs";
import { chmod, link, mkdir, mkdtemp, open, opendir, readFile, realpath, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { listFilesTool, searchFilesTool } from "../../src/engine/tools/fs-read-tools.js";
import { DEFAULT_TOOL_LIMITS } from "../../src/engine/tools/tool-limits.js";
import { Workspace } from "../../src/engine/tools/workspace.js";
import { UnansweredLookups } from "../../src/runtime/index.js";
import type { ScriptedToolCall } from "../support/openai-chunks.js";
import { reply } from "../support/openai-chunks.js";
import { RecordingSink, runRequest } from "../support/recording-sink.js";
import { binaryWithMissingLoader } from "../support/unstartable-programs.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { profileWith, startHarness, type Harness } from "./harness.js";

const call = (id: string, name: string, args: object): ScriptedToolCall => ({ id, name, arguments: JSON.stringify(args) });

describe("tools", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  /** Runs one turn of tool calls, then a final answer; returns the results the model was sent. */
  async function runTools(harness: Harness, calls: ScriptedToolCall[], capabilities = ["fs.read", "fs.write", "shell.exec"]) {
    harness.fake.enqueue(reply({ toolCalls: calls }), reply({ text: "done" }));
    const { outcome, sink } = await harness.run({ input: "use tools", capabilities });
    expect(outcome.kind).toBe("completed");
    const sent = harness.fake.requests[1]?.body.messages.filter((m) => m.role === "tool") ?? [];
    return { results: sink.committed("toolResult"), sent: sent.map((m) => m.content) };
  }

  it("refuses `..`, absolute paths and symlinks that lead out of the workspace", async () => {
    h = await startHarness();
    await writeFile(join(h.outside, "secret.txt"), "top secret");
    await symlink(h.outside, join(h.workspace, "link"));
    await symlink(join(h.outside, "missing.txt"), join(h.workspace, "dangling.txt"));
    const { results, sent } = await runTools(h, [
      call("c1", "read_file", { path: "../outside/secret.txt" }),
      call("c2", "read_file", { path: join(h.outside, "secret.txt") }),
      call("c3", "read_file", { path: "link/secret.txt" }),
      call("c4", "write_file", { path: "link/planted.txt", content: "x" }),
      call("c5", "write_file", { path: "dangling.txt", content: "x" }),
      call("c6", "list_files", { path: "link" }),
      call("c7", "write_file", { path: "sub/../../escape.txt", content: "x" }),
    ]);
    expect(results.map((r) => r.isError)).toEqual([true, true, true, true, true, true, true]);
    for (const result of results) expect(result.output).toMatch(/^refused: /);
    expect(results[0]?.output).toContain("leads outside the workspace");
    expect(results[1]?.output).toContain("absolute path");
    expect(results[2]?.output).toContain("through a symlink");
    // The model read every refusal; nothing outside was read or written.
    expect(sent).toEqual(results.map((r) => r.output));
    expect(sent.join("\n")).not.toContain("top secret");
    await expect(stat(join(h.outside, "planted.txt"))).rejects.toThrow();
    await expect(stat(join(h.outside, "missing.txt"))).rejects.toThrow();
    await expect(stat(join(h.workspace, "..", "escape.txt"))).rejects.toThrow();
  });

  it("allows symlinks and `..` that stay inside the workspace", async () => {
    h = await startHarness();
    await mkdir(join(h.workspace, "docs"));
    await writeFile(join(h.workspace, "docs", "a.md"), "alpha");
    await symlink(join(h.workspace, "docs"), join(h.workspace, "docs-link"));
    const { results } = await runTools(h, [
      call("c1", "read_file", { path: "docs-link/a.md" }),
      call("c2", "read_file", { path: "docs/../docs/a.md" }),
      call("c3", "edit_file", { path: "docs/a.md", old_text: "alpha", new_text: "beta" }),
      call("c4", "search_files", { query: "beta" }),
      call("c5", "list_files", { recursive: true }),
    ]);
    expect(results.map((r) => [r.isError, r.output])).toEqual([
      [false, "alpha"],
      [false, "alpha"],
      [false, "edited docs/a.md"],
      [false, "docs/a.md:1: beta"],
      [false, "docs/\ndocs-link (symlink)\ndocs/a.md"],
    ]);
  });

  it("bounds file reads, listings, command output and tool output, and tells the model", async () => {
    h = await startHarness({
      toolLimits: { maxReadBytes: 100, maxListEntries: 3, maxCommandOutputBytes: 50, maxOutputBytes: 400 },
    });
    await writeFile(join(h.workspace, "big.txt"), "x".repeat(1000));
    for (const name of ["a", "b", "c", "d", "e"]) await writeFile(join(h.workspace, `${name}.txt`), `needle ${name}\n`.repeat(40));
    const { results, sent } = await runTools(h, [
      call("c1", "read_file", { path: "big.txt" }),
      call("c2", "list_files", {}),
      call("c3", "run_command", { command: "yes hello | head -c 5000" }),
      call("c4", "search_files", { query: "needle" }),
      call("c5", "read_file", { path: "big.txt", offset: 950 }),
    ]);
    expect(results.map((r) => r.truncated)).toEqual([true, true, true, true, false]);
    expect(results[0]?.output).toBe(
      `${"x".repeat(100)}\n[file truncated: showing bytes 0-100 of 1000; call read_file with offset=100 for more]`,
    );
    expect(results[1]?.output).toBe("a.txt\nb.txt\nbig.txt\n[listing truncated at 3 entries]");
    expect(results[2]?.output).toContain("exit code 0");
    expect(results[2]?.output).toContain("[command output truncated: showing the first 50 of 5000 bytes]");
    // The search's own note survives the cut, which makes room for it.
    expect(results[3]?.output.split("\n").slice(-2)).toEqual([
      "[tool output truncated: showing the first 342 of 3754 bytes]",
      "[search stopped at 200 matches; narrow the query or path]",
    ]);
    expect(Buffer.byteLength(results[3]?.output ?? "")).toBeLessThan(500);
    expect(results[4]?.output).toBe(`${"x".repeat(50)}\n[showing bytes 950-1000 of 1000]`);
    expect(sent).toEqual(results.map((r) => r.output));
  });

  it("kills a command at its timeout and reports it; a failing command is an error result", async () => {
    h = await startHarness();
    const { results } = await runTools(h, [
      // The timeout leaves the shell seconds to start and print, even on a loaded machine.
      call("c1", "run_command", { command: "echo started; sleep 20", timeout_ms: 3000 }),
      call("c2", "run_command", { command: "echo oops >&2; exit 3" }),
      call("c3", "run_command", { command: "echo $OPENAI_API_KEY" }),
    ]);
    expect(results[0]).toMatchObject({ isError: true, output: "killed after the 3000 ms timeout\nstarted\n" });
    expect(results[1]).toMatchObject({ isError: true, output: "exit code 3\noops\n" });
    // Commands the model writes never see the provider key.
    expect(results[2]).toMatchObject({ isError: false, output: "exit code 0\n\n" });
  });

  it("reports bad arguments and missing files as errors the model can read", async () => {
    h = await startHarness();
    const { results } = await runTools(h, [
      { id: "c1", name: "read_file", arguments: "{not json" },
      call("c2", "read_file", {}),
      call("c3", "read_file", { path: "nope.txt" }),
      call("c4", "edit_file", { path: "nope.txt", old_text: "a", new_text: "b" }),
    ]);
    expect(results.map((r) => r.output)).toEqual([
      "the arguments are not valid JSON",
      'argument "path" must be a string',
      "no such file or directory: nope.txt",
      "no such file or directory: nope.txt",
    ]);
    // The invalid arguments are not sent back: some servers reject a request with invalid JSON in an old call.
    const replayed = h.fake.requests[1]?.body.messages.find((m) => m.role === "assistant")?.tool_calls?.[0];
    expect(replayed?.function.arguments).toBe("{}");
  });

  it("refuses to read, write, edit or search through a hard link to a file outside the workspace", async () => {
    h = await startHarness();
    await writeFile(join(h.outside, "secret.txt"), "top secret");
    await link(join(h.outside, "secret.txt"), join(h.workspace, "linked.txt"));
    const { results, sent } = await runTools(h, [
      call("c1", "read_file", { path: "linked.txt" }),
      call("c2", "write_file", { path: "linked.txt", content: "planted" }),
      call("c3", "edit_file", { path: "linked.txt", old_text: "top", new_text: "no" }),
      call("c4", "search_files", { query: "secret" }),
    ]);
    expect(results.map((r) => r.isError)).toEqual([true, true, true, false]);
    for (const result of results.slice(0, 3)) expect(result.output).toMatch(/^refused: linked\.txt has 2 hard links/);
    expect(results[3]?.output).toBe("no matches");
    expect(sent.join("\n")).not.toContain("top secret");
    expect(await readFile(join(h.outside, "secret.txt"), "utf8")).toBe("top secret");
  });

  it("writes by replacing the file, keeping its mode, and leaves no temp file behind", async () => {
    h = await startHarness();
    await writeFile(join(h.workspace, "run.sh"), "echo one");
    await chmod(join(h.workspace, "run.sh"), 0o750);
    // Stands in for a link made to the file after the checks: it must keep the old content.
    const old = await open(join(h.workspace, "run.sh"), "r");
    const { results } = await runTools(h, [
      call("c1", "write_file", { path: "run.sh", content: "echo two" }),
      call("c2", "edit_file", { path: "run.sh", old_text: "two", new_text: "three" }),
      call("c3", "list_files", {}),
    ]);
    expect(results.map((r) => r.isError)).toEqual([false, false, false]);
    const after = await stat(join(h.workspace, "run.sh"));
    expect(await old.readFile("utf8")).toBe("echo one");
    await old.close();
    expect(after.mode & 0o777).toBe(0o750);
    expect(await readFile(join(h.workspace, "run.sh"), "utf8")).toBe("echo three");
    expect(results[2]?.output).toBe("run.sh");
  });

  it("edits a file that is not UTF-8 without changing a byte outside the edit", async () => {
    h = await startHarness();
    // Latin-1 text, a lone invalid byte and a CRLF: decoding it as UTF-8 and writing it back would replace them.
    const before = Buffer.concat([Buffer.from("caf"), Buffer.from([0xe9]), Buffer.from(" old\r\n"), Buffer.from([0xff, 0x00, 0x80])]);
    await writeFile(join(h.workspace, "latin1.txt"), before);
    const { results } = await runTools(h, [
      call("c1", "edit_file", { path: "latin1.txt", old_text: "old", new_text: "neuf" }),
      call("c2", "edit_file", { path: "latin1.txt", old_text: "absent", new_text: "x" }),
    ]);
    expect(results.map((r) => r.output)).toEqual([
      "edited latin1.txt",
      "old_text occurs 0 times in latin1.txt; it must occur exactly once",
    ]);
    const after = await readFile(join(h.workspace, "latin1.txt"));
    expect(after.equals(Buffer.from(before.toString("latin1").replace("old", "neuf"), "latin1"))).toBe(true);
  });

  it("refuses a FIFO at once instead of hanging on it", async () => {
    h = await startHarness();
    execFileSync("mkfifo", [join(h.workspace, "pipe")]);
    const { results } = await runTools(h, [
      call("c1", "read_file", { path: "pipe" }),
      call("c2", "edit_file", { path: "pipe", old_text: "a", new_text: "b" }),
      call("c3", "write_file", { path: "pipe", content: "x" }),
    ]);
    for (const result of results) {
      expect(result).toMatchObject({ isError: true, output: "refused: pipe is not a regular file (a FIFO, socket or device)" });
    }
  }, 5_000);

  it("refuses to edit a file over the write bound before reading it", async () => {
    h = await startHarness({ toolLimits: { maxWriteBytes: 100 } });
    await writeFile(join(h.workspace, "big.txt"), `needle${"x".repeat(500)}`);
    const { results } = await runTools(h, [call("c1", "edit_file", { path: "big.txt", old_text: "needle", new_text: "pin" })]);
    expect(results[0]).toMatchObject({ isError: true, output: "refused: big.txt is 506 bytes; edit_file handles files up to 100 bytes" });
  });

  it("stops search_files after its file and byte limits and says so", async () => {
    h = await startHarness({ toolLimits: { maxSearchFiles: 2 } });
    for (const name of ["a", "b", "c", "d"]) await writeFile(join(h.workspace, `${name}.txt`), name === "d" ? "needle" : "hay");
    const { results } = await runTools(h, [call("c1", "search_files", { query: "needle" })]);
    expect(results[0]).toMatchObject({
      truncated: true,
      output: "no matches so far\n[search stopped after reading 2 files (6 bytes), its limit; narrow the path]",
    });
    await h.close();
    h = await startHarness({ toolLimits: { maxSearchTotalBytes: 5 } });
    for (const name of ["a", "b", "c"]) await writeFile(join(h.workspace, `${name}.txt`), "needle");
    const second = await runTools(h, [call("c1", "search_files", { query: "needle" })]);
    expect(second.results[0]?.output).toBe("a.txt:1: needle\n[search stopped after reading 1 files (6 bytes), its limit; narrow the path]");
  });

  it("bounds the directory entries and levels search_files and list_files walk, and says so", async () => {
    h = await startHarness({ toolLimits: { maxWalkEntries: 5 } });
    // A wide tree (think node_modules): the walk stops at its entry bound, not at the end of the tree.
    await mkdir(join(h.workspace, "a"));
    for (let i = 0; i < 10; i++) await writeFile(join(h.workspace, "a", `${i}.txt`), "hay");
    await writeFile(join(h.workspace, "z.txt"), "needle");
    const wide = await runTools(h, [
      call("c1", "search_files", { query: "needle" }),
      call("c2", "list_files", { path: "a" }),
      call("c3", "list_files", { recursive: true }),
    ]);
    expect(wide.results.map((r) => r.truncated)).toEqual([true, true, true]);
    expect(wide.results[0]?.output).toBe(
      "z.txt:1: needle\n[search stopped after visiting 5 directory entries, its limit; narrow the path]",
    );
    const listed = wide.results[1]?.output.split("\n") ?? [];
    expect(listed).toHaveLength(6);
    expect(listed[5]).toBe("[listing stopped after visiting 5 directory entries, its limit; list a narrower path]");
    expect(wide.results[2]?.output.split("\n").slice(0, 2)).toEqual(["a/", "z.txt"]);
    await h.close();
    // A deep tree: directories past the depth bound are not read.
    h = await startHarness({ toolLimits: { maxWalkDepth: 2 } });
    await mkdir(join(h.workspace, "d1", "d2", "d3"), { recursive: true });
    await writeFile(join(h.workspace, "d1", "d2", "shallow.txt"), "needle");
    await writeFile(join(h.workspace, "d1", "d2", "d3", "deep.txt"), "needle");
    const deep = await runTools(h, [call("c1", "search_files", { query: "needle" }), call("c2", "list_files", { recursive: true })]);
    expect(deep.results.map((r) => [r.truncated, r.output])).toEqual([
      [true, "d1/d2/shallow.txt:1: needle\n[search did not look more than 2 directory levels down; search from a deeper path]"],
      [true, "d1/\nd1/d2/\nd1/d2/d3/\nd1/d2/shallow.txt\n[listing did not go more than 2 directory levels down; list from a deeper path]"],
    ]);
    expect(deep.sent).toEqual(deep.results.map((r) => r.output));
  });

  it("skips what search_files and list_files cannot read, keeps the rest, and names what was skipped", async () => {
    h = await startHarness({ toolLimits: { maxOutputBytes: 1024 * 1024 } });
    const ws = h.workspace;
    await writeFile(join(ws, "a.txt"), "needle a");
    await writeFile(join(ws, "z.txt"), "needle z");
    // Unreadable by mode: denies a process without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (not root, as tests often run).
    await mkdir(join(ws, "locked"));
    await writeFile(join(ws, "locked", "inner.txt"), "needle locked");
    await writeFile(join(ws, "secret.txt"), "needle secret");
    await chmod(join(ws, "locked"), 0o000);
    await chmod(join(ws, "secret.txt"), 0o000);
    const modeDenies = await opendir(join(ws, "locked")).then(
      (dir) => dir.close().then(() => false),
      () => true,
    );
    // Unreadable for anyone, root included: past PATH_MAX (4096 bytes), opening fails with ENAMETOOLONG.
    const segment = "s".repeat(200);
    let chain = "deep";
    while (join(ws, chain).length < 4096 - 251) chain = join(chain, segment);
    const dirName = "d".repeat(250);
    const fileName = "f".repeat(250);
    // GNU mkdir -p makes each level relative to the last, so it is not bound by PATH_MAX.
    execFileSync("mkdir", ["-p", join(chain, dirName)], { cwd: ws });
    execFileSync("sh", ["-c", 'cd "$1" && echo needle deep > "$2" && echo needle shallow > ../shallow.txt', "sh", chain, fileName], {
      cwd: ws,
    });
    try {
      const { results } = await runTools(h, [
        call("c1", "search_files", { query: "needle" }),
        call("c2", "list_files", { recursive: true }),
      ]);
      const tail = (name: string): string => `…${name.slice(-99)}`;
      const parent = chain.split("/").slice(0, -1).join("/");
      // Each skip is named, cut to its end when long; the files and folders that could be read are all there.
      const searchSkipped = [
        ...(modeDenies ? ["secret.txt", "locked/"] : []),
        tail(join(chain, fileName)),
        tail(`${join(chain, dirName)}/`),
      ];
      const search = results[0]?.output.split("\n") ?? [];
      expect(results[0]?.isError).toBe(false);
      expect(results[0]?.truncated).toBe(true);
      expect(search).toEqual([
        "a.txt:1: needle a",
        ...(modeDenies ? [] : ["secret.txt:1: needle secret"]),
        "z.txt:1: needle z",
        ...(modeDenies ? [] : ["locked/inner.txt:1: needle locked"]),
        `${parent}/shallow.txt:1: needle shallow`,
        `[search skipped ${searchSkipped.length} unreadable entries: ${searchSkipped.join(", ")}]`,
      ]);
      const listSkipped = [...(modeDenies ? ["locked/"] : []), tail(`${join(chain, dirName)}/`)];
      const listing = results[1]?.output.split("\n") ?? [];
      expect(results[1]?.isError).toBe(false);
      expect(results[1]?.truncated).toBe(true);
      expect(listing.slice(0, 5)).toEqual(["a.txt", "deep/", "locked/", "secret.txt", "z.txt"]);
      expect(listing).toContain(`${join(chain, fileName)}`);
      expect(listing.at(-1)).toBe(
        `[listing skipped ${listSkipped.length} unreadable ${listSkipped.length === 1 ? "entry" : "entries"}: ${listSkipped.join(", ")}]`,
      );
      if (modeDenies) {
        // A start that cannot be read is an error naming the model's path, not the host's.
        const start = await runTools(h, [
          call("c1", "list_files", { path: "locked" }),
          call("c2", "search_files", { query: "x", path: "locked" }),
        ]);
        expect(start.results.map((r) => [r.isError, r.output])).toEqual([
          [true, "cannot read locked: permission denied (EACCES)"],
          [true, "cannot read locked: permission denied (EACCES)"],
        ]);
      }
    } finally {
      await chmod(join(ws, "locked"), 0o755);
      // Node's recursive rm works on whole paths, which this tree exceeds.
      execFileSync("rm", ["-rf", "deep"], { cwd: ws });
    }
  });

  it("keeps a listing's and a search's own notes whole when the tool output bound cuts a large result", async () => {
    h = await startHarness({ toolLimits: { maxWalkEntries: 5, maxOutputBytes: 300 } });
    // Five long names are more than the output bound holds; the walk stops at five entries.
    for (let i = 0; i < 8; i++) await writeFile(join(h.workspace, `${String(i).repeat(80)}.txt`), "needle\n".repeat(10));
    const { results, sent } = await runTools(h, [
      call("c1", "search_files", { query: "needle" }),
      call("c2", "list_files", {}),
      call("c3", "run_command", { command: "yes hello | head -c 40000" }),
    ]);
    const walkNote = (what: string, verb: string) => `[${what} stopped after visiting 5 directory entries, its limit; ${verb}]`;
    for (const [result, note] of [
      [results[0], walkNote("search", "narrow the path")],
      [results[1], walkNote("listing", "list a narrower path")],
      [results[2], "[command output truncated: showing the first 32768 of 40000 bytes]"],
    ] as const) {
      const lines = result?.output.split("\n") ?? [];
      // The model learns both that the output was cut and why the walk stopped.
      expect(lines.at(-1)).toBe(note);
      expect(lines.at(-2)).toMatch(/^\[tool output truncated: showing the first \d+ of \d+ bytes\]$/);
      expect(result?.truncated).toBe(true);
      // The note takes the place of listing, not more room: the whole stays within the bound and the cut's own note.
      expect(Buffer.byteLength(result?.output ?? "")).toBeLessThanOrEqual(300 + Buffer.byteLength(`\n${lines.at(-2)}`));
    }
    expect(sent).toEqual(results.map((r) => r.output));
    await h.close();
    // The note naming what could not be read survives the cut too (a path past PATH_MAX is unreadable even for root).
    h = await startHarness({ toolLimits: { maxOutputBytes: 1024 } });
    const ws = h.workspace;
    let chain = "deep";
    while (join(ws, chain).length < 4096 - 251) chain = join(chain, "s".repeat(200));
    execFileSync("mkdir", ["-p", join(chain, "d".repeat(250))], { cwd: ws });
    execFileSync("sh", ["-c", 'cd "$1" && echo needle > ../near.txt', "sh", chain], { cwd: ws });
    try {
      const { results: cut } = await runTools(h, [
        call("c1", "search_files", { query: "needle" }),
        call("c2", "list_files", { recursive: true }),
      ]);
      const skipped = `…${`${join(chain, "d".repeat(250))}/`.slice(-99)}`;
      expect(cut.map((r) => r.output.split("\n").at(-1))).toEqual([
        `[search skipped 1 unreadable entry: ${skipped}]`,
        `[listing skipped 1 unreadable entry: ${skipped}]`,
      ]);
      for (const result of cut) expect(result.output).toContain("[tool output truncated: showing the first ");
    } finally {
      execFileSync("rm", ["-rf", "deep"], { cwd: ws });
    }
  });

  it("reads a slice that fits the tool output bound, so the note with the next offset is never cut off", async () => {
    // The defaults: a 64 KiB read slice, a 32 KiB tool output bound.
    h = await startHarness();
    await writeFile(join(h.workspace, "big.txt"), "x".repeat(100_000));
    const { results } = await runTools(h, [call("c1", "read_file", { path: "big.txt" })]);
    const lines = results[0]?.output.split("\n") ?? [];
    expect(lines.at(-1)).toMatch(/^\[file truncated: showing bytes 0-(\d+) of 100000; call read_file with offset=\1 for more\]$/);
    const end = Number(/offset=(\d+)/.exec(lines.at(-1) ?? "")?.[1]);
    // What the note says was shown is what the model got, whole.
    expect(lines.slice(0, -1).join("\n")).toBe("x".repeat(end));
    expect(Buffer.byteLength(results[0]?.output ?? "")).toBeLessThanOrEqual(DEFAULT_TOOL_LIMITS.maxOutputBytes);
  });

  it("cuts a read_file slice between characters and shows exactly the bytes its note names, for UTF-8 and for bytes that are not", async () => {
    // A 100-byte slice (356 - the 256 bytes left for the note) lands inside a character, and invalid bytes decode to
    // U+FFFD, three bytes each: the text must still fit the bound whole, so the note's range and offset are true.
    h = await startHarness({ toolLimits: { maxReadBytes: 100, maxOutputBytes: 356 } });
    const utf8 = `x${"é".repeat(100)}`;
    await writeFile(join(h.workspace, "utf8.txt"), utf8);
    const emoji = `${"a".repeat(98)}😀z`;
    await writeFile(join(h.workspace, "emoji.txt"), emoji);
    // Latin-1 "é" bytes: not UTF-8 at all.
    const latin1 = Buffer.alloc(200, 0xe9);
    await writeFile(join(h.workspace, "latin1.txt"), latin1);
    // UTF-8 whose last character was cut off (a file itself truncated mid-character).
    const cutOff = Buffer.concat([Buffer.from("ab"), Buffer.from("€").subarray(0, 2)]);
    await writeFile(join(h.workspace, "cut-off.txt"), cutOff);
    const { results, sent } = await runTools(h, [
      call("c1", "read_file", { path: "utf8.txt" }),
      call("c2", "read_file", { path: "utf8.txt", offset: 99 }),
      call("c3", "read_file", { path: "utf8.txt", offset: 199 }),
      call("c4", "read_file", { path: "emoji.txt" }),
      call("c5", "read_file", { path: "emoji.txt", offset: 98 }),
      call("c6", "read_file", { path: "latin1.txt" }),
      call("c7", "read_file", { path: "cut-off.txt" }),
    ]);
    expect(results.map((r) => r.output)).toEqual([
      `x${"é".repeat(49)}\n[file truncated: showing bytes 0-99 of 201; call read_file with offset=99 for more]`,
      `${"é".repeat(50)}\n[file truncated: showing bytes 99-199 of 201; call read_file with offset=199 for more]`,
      "é\n[showing bytes 199-201 of 201]",
      `${"a".repeat(98)}\n[file truncated: showing bytes 0-98 of 103; call read_file with offset=98 for more]`,
      "😀z\n[showing bytes 98-103 of 103]",
      `${"\uFFFD".repeat(33)}\n[file truncated: showing bytes 0-33 of 200; call read_file with offset=33 for more]`,
      // At the end of the file there is nothing more to wait for: the cut-off character's bytes are invalid.
      "ab\uFFFD",
    ]);
    // Each fits the bound whole: the tool output bound cut none of them (it would add its own note).
    for (const result of results) expect(Buffer.byteLength(result.output)).toBeLessThanOrEqual(356);
    expect(sent).toEqual(results.map((r) => r.output));
  });

  it("refuses a read_file offset past the end of the file, saying how long the file is", async () => {
    h = await startHarness();
    await writeFile(join(h.workspace, "small.txt"), "x".repeat(1000));
    await writeFile(join(h.workspace, "empty.txt"), "");
    const { results } = await runTools(h, [
      call("c1", "read_file", { path: "small.txt", offset: 5000 }),
      call("c2", "read_file", { path: "small.txt", offset: 1000 }),
      call("c3", "read_file", { path: "small.txt", offset: 999 }),
      call("c4", "read_file", { path: "empty.txt" }),
      call("c5", "read_file", { path: "empty.txt", offset: 3 }),
    ]);
    expect(results.map((r) => [r.isError, r.output])).toEqual([
      [true, "small.txt has 1000 bytes; offset 5000 is past its end (the last offset to read from is 999)"],
      [true, "small.txt has 1000 bytes; offset 1000 is past its end (the last offset to read from is 999)"],
      [false, "x\n[showing bytes 999-1000 of 1000]"],
      [false, ""],
      [true, "empty.txt has 0 bytes; offset 3 is past its end (the file is empty)"],
    ]);
  });

  it("tells the model its workspace no longer exists when it is deleted before an unsandboxed command", async () => {
    h = await startHarness();
    const harness = h;
    harness.fake.enqueue(reply({ toolCalls: [call("c1", "run_command", { command: "echo ran" })] }), reply({ text: "ok" }));
    // The workspace goes away after the run opened it (an operator's clean-up, say).
    const { outcome, sink } = await harness.run({
      input: "run",
      capabilities: ["shell.exec"],
      profile: profileWith(h.companion, { approvalRequiredTools: ["run_command"] }),
      onApproval: async () => {
        await rm(harness.workspace, { recursive: true });
        return { approved: true, reason: "" };
      },
    });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("toolResult").map((r) => [r.isError, r.output])).toEqual([
      [true, "cannot run the command: the workspace no longer exists"],
    ]);
    expect(JSON.stringify(harness.fake.requests.map((request) => request.body))).not.toContain(harness.workspace);
  });

  it("names an allowed program this runtime does not have, instead of spawn's ENOENT, and the backend can tell", async () => {
    h = await startHarness();
    h.fake.enqueue(
      reply({
        toolCalls: [
          call("c1", "run_command", { command: "no-such-program-t5 --version" }),
          call("c2", "run_command", { command: "echo hi" }),
        ],
      }),
      reply({ text: "ok" }),
    );
    const sink = new RecordingSink("run-policy");
    sink.commitInput("run");
    const request = {
      ...runRequest(sink, {
        input: "run",
        runId: "run-policy",
        profile: h.companion,
        workspaceDir: h.workspace,
        capabilities: ["shell.exec"],
      }),
      policy: { secrets: new Map<string, string>(), shell: { allowedPrograms: ["echo", "no-such-program-t5"] } },
    };
    expect((await h.backend.execute(request, sink, new AbortController().signal)).kind).toBe("completed");
    expect(sink.committed("toolResult").map((r) => [r.isError, r.output])).toEqual([
      [true, '"no-such-program-t5" is allowed for this worker but is not installed on this runtime'],
      [false, "exit code 0\nhi\n"],
    ]);
    // What CreateWorker asks before it grants shell.exec under such a policy (bundles.test.ts).
    expect((await h.backend.programProblems?.(["echo", "no-such-program-t5", "sh"]))?.map((p) => p.program)).toEqual([
      "no-such-program-t5",
    ]);
  });

  it("tells why an installed program cannot start (its interpreter or loader missing, not executable), not that it is not installed", async () => {
    // Real files on the PATH, each a regular file there that cannot start for its own reason, which spawn
    // reports as ENOENT (missing interpreter, loader) or EACCES (interpreter not executable); these read
    // "not installed" before, which sent the operator looking for a program that was there. The check
    // (CreateWorker's, and run_command's before it starts one) now reads the reason from the file itself.
    const bin = await mkdtemp(join(tmpdir(), "spawn-fail-bin-"));
    const savedPath = process.env.PATH;
    try {
      await writeFile(join(bin, "not-executable"), "");
      await writeFile(join(bin, "python-t6"), "#!/nonexistent/python\nprint(1)\n", { mode: 0o755 });
      await writeFile(join(bin, "args-t6"), `#! ${join(bin, "removed-env")} python3 -u\n`, { mode: 0o755 });
      await writeFile(join(bin, "denied-t6"), `#!${join(bin, "not-executable")}\n`, { mode: 0o755 });
      await writeFile(join(bin, "loader-t6"), await binaryWithMissingLoader("/usr/bin/true"), { mode: 0o755 });
      await writeFile(join(bin, "plain-t6"), "#!/bin/sh\necho hi\n", { mode: 0o644 });
      process.env.PATH = `${bin}:${savedPath ?? ""}`;
      h = await startHarness();
      const programs = ["python-t6", "args-t6", "denied-t6", "loader-t6", "plain-t6"];
      expect((await h.backend.programProblems?.(programs))?.map((p) => [p.program, p.cause])).toEqual([
        ["python-t6", "interpreter_missing"],
        ["args-t6", "interpreter_missing"],
        ["denied-t6", "interpreter_not_executable"],
        ["loader-t6", "loader_missing"],
        ["plain-t6", "not_executable"],
      ]);
      h.fake.enqueue(
        reply({
          toolCalls: [...programs.map((program) => `${program} --version`), "echo hi"].map((command, i) =>
            call(`c${i + 1}`, "run_command", { command }),
          ),
        }),
        reply({ text: "ok" }),
      );
      const sink = new RecordingSink("run-spawn-fail");
      sink.commitInput("run");
      const request = {
        ...runRequest(sink, {
          input: "run",
          runId: "run-spawn-fail",
          profile: h.companion,
          workspaceDir: h.workspace,
          capabilities: ["shell.exec"],
        }),
        policy: { secrets: new Map<string, string>(), shell: { allowedPrograms: ["echo", ...programs] } },
      };
      expect((await h.backend.execute(request, sink, new AbortController().signal)).kind).toBe("completed");
      expect(sink.committed("toolResult").map((r) => [r.isError, r.output])).toEqual([
        [
          true,
          '"python-t6" is installed on this runtime but cannot start: its interpreter "/nonexistent/python" (named on its first line) is missing',
        ],
        [
          true,
          `"args-t6" is installed on this runtime but cannot start: its interpreter "${join(bin, "removed-env")}" (named on its first line) is missing`,
        ],
        [
          true,
          `"denied-t6" is installed on this runtime but cannot start: its interpreter "${join(bin, "not-executable")}" (named on its first line) is not executable`,
        ],
        [true, '"loader-t6" is installed on this runtime but cannot start: the dynamic loader it needs is missing'],
        [true, '"plain-t6" is installed on this runtime but is not executable'],
        [false, "exit code 0\nhi\n"],
      ]);
    } finally {
      process.env.PATH = savedPath;
      await rm(bin, { recursive: true, force: true });
    }
  });

  it("refuses a policy program with no #! line that is not a binary, rather than let execvp run it under /bin/sh", async () => {
    // glibc's execvp (libuv's spawn, bwrap) answers the kernel's ENOEXEC by running the file with /bin/sh:
    // a text file marked executable ran as a shell script, under a shell its author never named.
    const bin = await mkdtemp(join(tmpdir(), "no-shebang-bin-"));
    const savedPath = process.env.PATH;
    try {
      await writeFile(join(bin, "script-t8"), "echo ran > ran-under-sh.txt\n", { mode: 0o755 });
      await writeFile(join(bin, "empty-t8"), "", { mode: 0o755 });
      process.env.PATH = `${bin}:${savedPath ?? ""}`;
      h = await startHarness();
      expect((await h.backend.programProblems?.(["echo", "script-t8", "empty-t8"]))?.map((p) => [p.program, p.cause])).toEqual([
        ["script-t8", "no_shebang"],
        ["empty-t8", "no_shebang"],
      ]);
      h.fake.enqueue(
        reply({ toolCalls: ["script-t8", "empty-t8", "echo hi"].map((command, i) => call(`c${i + 1}`, "run_command", { command })) }),
        reply({ text: "ok" }),
      );
      const sink = new RecordingSink("run-no-shebang");
      sink.commitInput("run");
      const request = {
        ...runRequest(sink, {
          input: "run",
          runId: "run-no-shebang",
          profile: h.companion,
          workspaceDir: h.workspace,
          capabilities: ["shell.exec"],
        }),
        policy: { secrets: new Map<string, string>(), shell: { allowedPrograms: ["echo", "script-t8", "empty-t8"] } },
      };
      expect((await h.backend.execute(request, sink, new AbortController().signal)).kind).toBe("completed");
      const refusal = (program: string): string =>
        `"${program}" is installed on this runtime but cannot start: it has no #! line and is not a binary (a shell would run it as a script; name its interpreter on a #! first line)`;
      expect(sink.committed("toolResult").map((r) => [r.isError, r.output])).toEqual([
        [true, refusal("script-t8")],
        [true, refusal("empty-t8")],
        [false, "exit code 0\nhi\n"],
      ]);
      await expect(stat(join(h.workspace, "ran-under-sh.txt"))).rejects.toThrow();
    } finally {
      process.env.PATH = savedPath;
      await rm(bin, { recursive: true, force: true });
    }
  });

  it("searches the one file search_files is given as its path", async () => {
    h = await startHarness();
    await mkdir(join(h.workspace, "docs"));
    await writeFile(join(h.workspace, "docs", "notes.md"), "hay\nneedle here\nhay");
    await writeFile(join(h.workspace, "docs", "other.md"), "needle elsewhere");
    await writeFile(join(h.workspace, "docs", "bin.dat"), Buffer.from([0, 110, 101, 101, 100, 108, 101]));
    await writeFile(join(h.outside, "secret.txt"), "needle outside");
    await link(join(h.outside, "secret.txt"), join(h.workspace, "linked.txt"));
    await writeFile(join(h.workspace, "big.txt"), `needle${"x".repeat(2 * 1024 * 1024)}`);
    const { results } = await runTools(h, [
      call("c1", "search_files", { query: "needle", path: "docs/notes.md" }),
      call("c2", "search_files", { query: "absent", path: "docs/notes.md" }),
      call("c3", "search_files", { query: "needle", path: "docs/bin.dat" }),
      // What a walk skips quietly is refused when the model names the file.
      call("c4", "search_files", { query: "needle", path: "linked.txt" }),
      call("c5", "search_files", { query: "needle", path: "big.txt" }),
    ]);
    expect(results.map((r) => [r.isError, r.output])).toEqual([
      [false, "docs/notes.md:2: needle here"],
      [false, "no matches"],
      [false, "no matches"],
      [true, "refused: linked.txt has 2 hard links; a hard-linked file may be shared with a file outside the workspace"],
      [true, "big.txt is 2097158 bytes; search_files reads files up to 1048576 bytes"],
    ]);
  });

  it("keeps the private paths inside the workspace from the file tools, as the sandbox keeps them from commands", async () => {
    const base = await realpath(await mkdtemp(join(tmpdir(), "tools-private-")));
    const ws = join(base, "ws");
    try {
      // An operator who keeps the token and the data directory under the worker's workspace.
      h = await startHarness({ hiddenPaths: [join(ws, "conf", "token"), join(ws, "state", "data")] });
      await rm(h.workspace, { recursive: true });
      await mkdir(join(ws, "conf"), { recursive: true });
      await mkdir(join(ws, "state", "data", "workers"), { recursive: true });
      await writeFile(join(ws, "conf", "token"), "bearer-token-of-the-runtime");
      await writeFile(join(ws, "state", "data", "workers", "transcript.log"), "bearer of another worker's transcript");
      await writeFile(join(ws, "notes.txt"), "bearer of my own notes");
      await symlink("conf/token", join(ws, "alias"));
      await symlink(ws, h.workspace);
      const { results, sent } = await runTools(h, [
        call("c1", "read_file", { path: "conf/token" }),
        call("c2", "read_file", { path: "alias" }),
        call("c3", "read_file", { path: "state/data/workers/transcript.log" }),
        call("c4", "list_files", { path: "state/data" }),
        call("c5", "write_file", { path: "state/data/workers/planted.log", content: "x" }),
        call("c6", "edit_file", { path: "conf/token", old_text: "bearer", new_text: "x" }),
        call("c7", "search_files", { query: "bearer" }),
        call("c8", "list_files", { recursive: true }),
      ]);
      expect(results.slice(0, 6).map((r) => [r.isError, r.output])).toEqual([
        [true, "refused: conf/token is private to this runtime"],
        [true, "refused: alias is private to this runtime"],
        [true, "refused: state/data/workers/transcript.log is private to this runtime"],
        [true, "refused: state/data is private to this runtime"],
        [true, "refused: state/data/workers/planted.log is private to this runtime"],
        [true, "refused: conf/token is private to this runtime"],
      ]);
      expect(results[6]?.output).toBe("notes.txt:1: bearer of my own notes");
      expect(results[7]?.output).toBe("alias (symlink)\nconf/\nnotes.txt\nstate/");
      expect(sent.join("\n")).not.toContain("another worker's transcript");
      expect(sent.join("\n")).not.toContain("token-of-the-runtime");
      expect(await readFile(join(ws, "conf", "token"), "utf8")).toBe("bearer-token-of-the-runtime");
      await expect(stat(join(ws, "state", "data", "workers", "planted.log"))).rejects.toThrow();
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("refuses a workspace that lies inside a private path under its root (the data directory, say)", async () => {
    const root = await realpath(await mkdtemp(join(tmpdir(), "tools-private-root-")));
    try {
      h = await startHarness({ hiddenPaths: [join(root, "data"), root] });
      await mkdir(join(root, "data", "runtimes"), { recursive: true });
      await writeFile(join(root, "data", "runtimes", "worker.log"), "another worker's transcript");
      h.fake.enqueue(reply({ toolCalls: [call("c1", "read_file", { path: "worker.log" })] }), reply({ text: "done" }));
      const sink = new RecordingSink("run-private-root");
      sink.commitInput("read");
      const request = {
        ...runRequest(sink, {
          input: "read",
          runId: "run-private-root",
          workspaceDir: join(root, "data", "runtimes"),
          capabilities: ["fs.read"],
        }),
        workspaceRootDir: root,
        workspaceRootDirs: [root],
      };
      const outcome = await h.backend.execute(request, sink, new AbortController().signal);
      expect(outcome).toEqual({
        kind: "failed",
        reason: ErrorReason.WORKSPACE_DENIED,
        message: "the worker's workspace lies inside a path this runtime keeps private",
      });
      expect(h.fake.requests).toHaveLength(0);
      // A workspace beside the private path, in the same root, runs.
      await mkdir(join(root, "mine"));
      const fine = await h.backend.execute(
        {
          ...runRequest(sink, { input: "read", runId: "run-private-root", workspaceDir: join(root, "mine"), capabilities: ["fs.read"] }),
          workspaceRootDir: root,
          workspaceRootDirs: [root],
        },
        sink,
        new AbortController().signal,
      );
      expect(fine.kind).toBe("completed");
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("checks the run's signal per file in search_files and per directory in list_files", async () => {
    h = await startHarness();
    await mkdir(join(h.workspace, "files"));
    for (const name of ["a", "b", "c", "d"]) await writeFile(join(h.workspace, "files", `${name}.txt`), "hay");
    await mkdir(join(h.workspace, "x", "y", "z"), { recursive: true });
    /** A signal that reports the abort at its second check, i.e. once the tool is under way. */
    const abortingAtSecondCheck = (): AbortSignal => {
      let checks = 0;
      return {
        aborted: false,
        throwIfAborted() {
          if (++checks >= 2) throw new DOMException("cancelled", "AbortError");
        },
        // The file calls listen for an abort too (Workspace.fileCall); this signal reports one only when checked.
        addEventListener() {},
        removeEventListener() {},
      } as unknown as AbortSignal;
    };
    const hostLookups = { lookups: new UnansweredLookups(), timeoutMs: 5_000, fs: promises };
    const workspace = await Workspace.open(h.workspace, hostLookups);
    const context = (signal: AbortSignal) => ({ workspace, limits: DEFAULT_TOOL_LIMITS, signal, hostLookups });
    await expect(searchFilesTool.run({ query: "needle", path: "files" }, context(abortingAtSecondCheck()))).rejects.toThrow("cancelled");
    await expect(listFilesTool.run({ recursive: true }, context(abortingAtSecondCheck()))).rejects.toThrow("cancelled");
  });

  describe("approvals", () => {
    const profile = (base: Harness) => profileWith(base.companion, { approvalRequiredTools: ["write_file"] });

    /** Runs "write" with writes needing approval, approving every call; `asked` is the ids asked for, in order. */
    async function writeApprovingEveryCall(base: Harness) {
      const asked: string[] = [];
      const ran = await base.run({
        input: "write",
        profile: profile(base),
        capabilities: ["fs.write"],
        onApproval: (pending) => {
          asked.push(pending.toolCallId);
          return Promise.resolve({ approved: true, reason: "" });
        },
      });
      return { asked, ...ran };
    }

    it("waits for approval, then runs the call", async () => {
      h = await startHarness();
      const harness = h;
      harness.fake.enqueue(
        reply({ toolCalls: [call("w1", "write_file", { path: "ok.txt", content: "yes" })] }),
        reply({ text: "written" }),
      );
      let fileDuringWait: string | undefined = "unset";
      const { outcome, sink } = await harness.run({
        input: "write",
        profile: profile(harness),
        capabilities: ["fs.write"],
        onApproval: async () => {
          fileDuringWait = await readFile(join(harness.workspace, "ok.txt"), "utf8").catch(() => undefined);
          return { approved: true, reason: "" };
        },
      });
      expect(outcome.kind).toBe("completed");
      expect(fileDuringWait).toBeUndefined();
      expect(sink.events.filter((e) => e.type === "approval")).toEqual([
        { type: "approval", call: { toolCallId: "w1", toolName: "write_file", argumentsJson: '{"path":"ok.txt","content":"yes"}' } },
      ]);
      expect(await readFile(join(harness.workspace, "ok.txt"), "utf8")).toBe("yes");
    });

    it("tells the model about a rejection and its reason, without running the call", async () => {
      h = await startHarness();
      h.fake.enqueue(reply({ toolCalls: [call("w1", "write_file", { path: "no.txt", content: "x" })] }), reply({ text: "ok, I won't" }));
      const { outcome, sink } = await h.run({
        input: "write",
        profile: profile(h),
        capabilities: ["fs.write"],
        onApproval: () => Promise.resolve({ approved: false, reason: "not in this folder" }),
      });
      expect(outcome.kind).toBe("completed");
      const rejection = "The user rejected this tool call, so it did not run. Reason: not in this folder";
      expect(sink.committed("toolResult")).toMatchObject([{ toolCallId: "w1", isError: true, output: rejection }]);
      expect(h.fake.requests[1]?.body.messages.at(-1)).toEqual({ role: "tool", tool_call_id: "w1", content: rejection });
      await expect(stat(join(h.workspace, "no.txt"))).rejects.toThrow();
    });

    it("gives calls that repeat a provider's id their own ids, so a decision and a result reach only the call they name", async () => {
      h = await startHarness();
      // A compatible server that numbers calls per response: two calls of one turn share "call_0", and the next turn repeats it.
      h.fake.enqueue(
        reply({
          toolCalls: [
            call("call_0", "write_file", { path: "a.txt", content: "a" }),
            call("call_0", "write_file", { path: "b.txt", content: "b" }),
          ],
        }),
        reply({ toolCalls: [call("call_0", "write_file", { path: "c.txt", content: "c" })] }),
        reply({ text: "written" }),
      );
      const { asked, outcome, sink } = await writeApprovingEveryCall(h);
      expect(outcome.kind).toBe("completed");
      expect(asked).toHaveLength(3);
      expect(new Set(asked).size).toBe(3);
      const calls = sink.committed("toolCall").map((c) => c.toolCallId);
      expect(calls).toEqual(asked);
      expect(sink.committed("toolResult").map((r) => r.toolCallId)).toEqual(asked);
      // The provider is sent each call with its own result.
      const last = h.fake.requests[2]?.body.messages ?? [];
      const sentCalls = last.flatMap((m) => m.tool_calls?.map((c) => c.id) ?? []);
      const sentResults = last.filter((m) => m.role === "tool").map((m) => m.tool_call_id);
      expect(sentCalls).toEqual(asked);
      expect(sentResults).toEqual(asked);
      // And so is a later run, whose history is rebuilt from the transcript.
      h.fake.enqueue(reply({ text: "again" }));
      expect((await h.run({ input: "again", sink })).outcome.kind).toBe("completed");
      const history = h.fake.requests[3]?.body.messages ?? [];
      expect(history.filter((m) => m.role === "tool").map((m) => [m.tool_call_id, m.content])).toEqual([
        [asked[0], "wrote 1 bytes to a.txt"],
        [asked[1], "wrote 1 bytes to b.txt"],
        [asked[2], "wrote 1 bytes to c.txt"],
      ]);
    });

    it("gives calls whose provider ids a client could not send back in ResolveApproval ids it can, the same in every message", async () => {
      h = await startHarness();
      // An id with a control character, one past ResolveApproval's 256 characters, one with a space, and a plain one kept.
      const odd = ["call\u001b[2J", `call_${"x".repeat(300)}`, "call 3"];
      h.fake.enqueue(
        reply({
          toolCalls: [
            ...odd.map((id, i) => call(id, "write_file", { path: `${i}.txt`, content: "x" })),
            call("call_kept", "write_file", { path: "k.txt", content: "k" }),
          ],
        }),
        reply({ text: "written" }),
      );
      const { asked, outcome, sink } = await writeApprovingEveryCall(h);
      expect(outcome.kind).toBe("completed");
      expect(asked).toHaveLength(4);
      expect(asked[3]).toBe("call_kept");
      for (const id of asked.slice(0, 3)) {
        expect(odd).not.toContain(id);
        // What ResolveApproval accepts: no control characters, at most 256 characters.
        expect(id).toMatch(/^[\x21-\x7e]{1,256}$/);
      }
      expect(new Set(asked).size).toBe(4);
      expect(sink.committed("toolCall").map((c) => c.toolCallId)).toEqual(asked);
      expect(sink.committed("toolResult").map((r) => r.toolCallId)).toEqual(asked);
      const sent = h.fake.requests[1]?.body.messages ?? [];
      expect(sent.flatMap((m) => m.tool_calls?.map((c) => c.id) ?? [])).toEqual(asked);
      expect(sent.filter((m) => m.role === "tool").map((m) => m.tool_call_id)).toEqual(asked);
    });

    it("ends the run cancelled when cancelled while waiting", async () => {
      h = await startHarness();
      h.fake.enqueue(reply({ toolCalls: [call("w1", "write_file", { path: "no.txt", content: "x" })] }));
      const controller = new AbortController();
      let waiting: () => void = () => undefined;
      const waitingNow = new Promise<void>((resolve) => (waiting = resolve));
      const running = h.run({
        input: "write",
        profile: profile(h),
        capabilities: ["fs.write"],
        signal: controller.signal,
        onApproval: (_call, signal) =>
          new Promise((_resolve, reject) => {
            waiting();
            signal.addEventListener("abort", () => reject(new DOMException("cancelled", "AbortError")));
          }),
      });
      await waitingNow;
      controller.abort();
      const { outcome } = await running;
      expect(outcome).toEqual({ kind: "cancelled" });
      expect(h.fake.requests).toHaveLength(1);
      await expect(stat(join(h.workspace, "no.txt"))).rejects.toThrow();
    });
  });
});
