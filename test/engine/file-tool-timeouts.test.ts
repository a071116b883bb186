import { mkdir, mkdtemp, readdir, readFile, realpath, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { UnansweredLookups } from "../../src/runtime/index.js";
import { AFTER_RESOLVING, hangingFs, slowFs } from "../support/hanging-fs.js";
import { reply, type ScriptedToolCall } from "../support/openai-chunks.js";
import { RecordingSink, runRequest } from "../support/recording-sink.js";
import { closeTestResources } from "../support/test-resources.js";
import { type Harness, startHarness } from "./harness.js";

/**
 * A path resolved inside the workspace can still lead into a file system
 * that stops answering (a nested NFS or FUSE mount): the file tools' own
 * calls (stat, open, read, write, a directory walk) are asked through the
 * engine's lookups too, each within the runtime's timeout. As in
 * host-lookups.test.ts, the backend is given a file system whose calls
 * under one directory never answer, here only once a path in it is
 * resolved (realpath and lstat answer); every other path is the real one.
 */

const TIMEOUT_MS = 300;

let base: string;
let engine: Harness | undefined;

beforeEach(async () => {
  base = await realpath(await mkdtemp(join(tmpdir(), "file-tool-timeouts-")));
});

afterEach(async () => {
  await engine?.close();
  engine = undefined;
  await closeTestResources(undefined, undefined, base);
});

/** A workspace `ws` holding notes.txt and a mount `mnt` (notes.txt too) whose calls hang once resolved, and `fine`; a backend readied with `timeoutMs`. */
async function startWith(timeoutMs = TIMEOUT_MS) {
  const ws = join(base, "ws");
  const fine = join(base, "fine");
  for (const dir of [join(ws, "mnt"), fine]) {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "notes.txt"), "hello\n");
  }
  await writeFile(join(ws, "notes.txt"), "hello\n");
  const fs = hangingFs(join(ws, "mnt"), 0, AFTER_RESOLVING);
  engine = await startHarness({ hostFs: fs });
  await engine.backend.ready?.({ lookups: new UnansweredLookups(), timeoutMs });
  return { harness: engine, ws, fine, fs };
}

const call = (id: string, name: string, args: Record<string, unknown>): ScriptedToolCall => ({ id, name, arguments: JSON.stringify(args) });

/** One run in `workspaceDir` whose model makes `calls` then ends: its outcome, its tool results, and how long it took. */
async function runCalls(harness: Harness, workspaceDir: string, calls: ScriptedToolCall[], signal = new AbortController().signal) {
  harness.fake.enqueue(reply({ toolCalls: calls }), reply({ text: "done" }));
  const runId = `run-${calls[0]?.id}`;
  const sink = new RecordingSink(runId);
  sink.commitInput("go");
  const request = runRequest(sink, { input: "go", runId, profile: harness.companion, workspaceDir, capabilities: ["fs.read", "fs.write"] });
  const started = Date.now();
  const outcome = await harness.backend.execute(request, sink, signal);
  const results = sink.committed("toolResult").map((result) => [result.isError, result.output]);
  return { outcome, elapsedMs: Date.now() - started, results };
}

const timedOut = (path: string): string =>
  `timed out on ${path}: the workspace's file system did not answer within ${TIMEOUT_MS} ms; try again once it answers`;

describe("a file tool call into a nested mount that hangs once its path is resolved", () => {
  it.each([
    ["read_file", { path: "mnt/notes.txt" }, "mnt/notes.txt"],
    ["list_files", { path: "mnt" }, "mnt"],
    ["search_files", { query: "hello", path: "mnt" }, "mnt"],
    ["search_files", { query: "hello" }, "mnt"],
    ["write_file", { path: "mnt/new.txt", content: "x" }, "mnt/new.txt"],
    ["edit_file", { path: "mnt/notes.txt", old_text: "hello", new_text: "bye" }, "mnt/notes.txt"],
  ])("%s %j is a tool error naming the path after the runtime's timeout, and the run goes on", async (name, args, shown) => {
    const { harness, ws } = await startWith();
    const { outcome, elapsedMs, results } = await runCalls(harness, ws, [call("c1", name, args)]);
    expect(outcome.kind).toBe("completed");
    // A loose bound: without one the call never ends.
    expect(elapsedMs).toBeLessThan(4_000);
    expect(results).toEqual([[true, timedOut(shown)]]);
  });

  it("asks the hung workspace no more while that call is unanswered, and another workspace's tools work", async () => {
    const { harness, ws, fine, fs } = await startWith();
    const stuck = await runCalls(harness, ws, [
      call("r1", "read_file", { path: "mnt/notes.txt" }),
      call("r2", "read_file", { path: "notes.txt" }),
      call("r3", "write_file", { path: "other.txt", content: "x" }),
    ]);
    expect(stuck.outcome.kind).toBe("completed");
    expect(fs.asked).toBe(1);
    // One thread of the pool on the hung mount: the workspace's later calls are refused at once, not asked.
    expect(stuck.results.slice(1)).toEqual([
      [true, "timed out on notes.txt: the workspace's file system did not answer within 300 ms; try again once it answers"],
      [true, "timed out on other.txt: the workspace's file system did not answer within 300 ms; try again once it answers"],
    ]);
    expect(await readdir(ws)).not.toContain("other.txt");
    const other = await runCalls(harness, fine, [
      call("f1", "read_file", { path: "notes.txt" }),
      call("f2", "write_file", { path: "new.txt", content: "written" }),
      call("f3", "list_files", {}),
    ]);
    expect(other.results).toEqual([
      [false, "hello\n"],
      [false, "wrote 7 bytes to new.txt"],
      [false, "new.txt\nnotes.txt"],
    ]);
    expect(await readFile(join(fine, "new.txt"), "utf8")).toBe("written");
  });

  it("does not make a write the model was told timed out once its file system answers late", async () => {
    const ws = join(base, "ws");
    await mkdir(join(ws, "mnt"), { recursive: true });
    await writeFile(join(ws, "mnt", "notes.txt"), "old\n");
    // Opening the temp file answers, but only after the timeout: the rest of the write would follow it.
    engine = await startHarness({ hostFs: slowFs([join(ws, "mnt")], 2 * TIMEOUT_MS, ["open"]) });
    await engine.backend.ready?.({ lookups: new UnansweredLookups(), timeoutMs: TIMEOUT_MS });
    const { results } = await runCalls(engine, ws, [call("w1", "write_file", { path: "mnt/notes.txt", content: "new\n" })]);
    expect(results).toEqual([[true, timedOut("mnt/notes.txt")]]);
    // Past the late open and what would have followed it.
    await new Promise((resolve) => setTimeout(resolve, 3 * TIMEOUT_MS));
    expect(await readFile(join(ws, "mnt", "notes.txt"), "utf8")).toBe("old\n");
    expect(await readdir(join(ws, "mnt"))).toEqual(["notes.txt"]);
  });

  it("is cancelled at once while a file tool waits on the hung mount, well before the timeout", async () => {
    const { harness, ws } = await startWith(60_000);
    const cancel = new AbortController();
    setTimeout(() => cancel.abort(), 200);
    const { outcome, elapsedMs, results } = await runCalls(
      harness,
      ws,
      [call("k1", "read_file", { path: "mnt/notes.txt" })],
      cancel.signal,
    );
    expect(outcome.kind).toBe("cancelled");
    expect(elapsedMs).toBeLessThan(4_000);
    expect(results).toEqual([[true, "The run was cancelled before this tool call finished."]]);
  });
});
