import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { chunk, replyChunks, reply } from "../support/openai-chunks.js";
import { RecordingSink } from "../support/recording-sink.js";
import { startHarness, type Harness } from "./harness.js";

/** Whether a process is gone: no such pid, or only a zombie awaiting its reaper. */
async function processGone(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

/** Polls until `probe` holds or `attempts` run out (never a timing assertion: it only waits). */
async function eventually(probe: () => Promise<boolean>, attempts = 100): Promise<boolean> {
  for (let i = 0; i < attempts; i++) {
    if (await probe()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

describe("cancel", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  // How fast the connection closes is a bench figure (`npm run bench -- cancel`), not a test assertion.
  it("aborts the provider request mid-stream: the provider sees the connection closed, partial text committed", async () => {
    const text = "word ".repeat(200);
    // "hang": the response never ends by itself, so only the client's abort can close the connection.
    h.fake.enqueue({ kind: "stream", chunks: replyChunks({ text, pieceSize: 5 }), delayMs: 20, end: "hang" });
    const sink = new RecordingSink("run-cancel-stream");
    const controller = new AbortController();
    const running = h.run({ input: "talk", signal: controller.signal, sink, runId: "run-cancel-stream" });
    await sink.waitFor((e) => e.type === "text" && sink.streamedText().length >= 15);
    expect(h.fake.requests[0]?.clientClosedAt).toBeUndefined();
    controller.abort();
    await h.fake.waitForClientClose(0);

    const { outcome } = await running;
    expect(outcome).toEqual({ kind: "cancelled" });
    const committed = sink.committed("assistantMessage").map((m) => m.text);
    expect(committed).toHaveLength(1);
    expect(committed[0]).toBe(sink.streamedText());
    expect(committed[0]?.length).toBeGreaterThanOrEqual(15);
    expect(committed[0]?.length).toBeLessThan(text.length);
    expect(h.fake.requests).toHaveLength(1);
  });

  it("cancels in the middle of a burst: text committed is what was streamed, and the provider's connection is closed", async () => {
    const chunks = [chunk({ role: "assistant", content: "" })];
    for (let i = 0; i < 20_000; i++) chunks.push(chunk({ content: "abcdefgh" }));
    // One write of the whole burst, then the response stays open: only the abort can close it.
    h.fake.enqueue({ kind: "raw", writes: [chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join("")], end: "hang" });
    const sink = new RecordingSink("run-cancel-burst");
    const controller = new AbortController();
    const running = h.run({ input: "flood", signal: controller.signal, sink, runId: "run-cancel-burst" });
    await sink.waitFor((e) => e.type === "text" && sink.streamedText().length >= 8 * 1_000);
    controller.abort();
    const { outcome } = await running;
    expect(outcome).toEqual({ kind: "cancelled" });
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual([sink.streamedText()]);
    expect(sink.streamedText().length).toBeLessThan(8 * 20_000);
    await h.fake.waitForClientClose(0);
    await h.fake.waitForOpenConnections(0);
  });

  it("cancels while waiting out a retry delay without another request", async () => {
    h.fake.enqueue({ kind: "error", status: 429, headers: { "retry-after": "1" } }, reply({ text: "never" }));
    const controller = new AbortController();
    const running = h.run({ input: "hi", signal: controller.signal });
    await h.fake.waitForRequests(1);
    controller.abort();
    const { outcome } = await running;
    expect(outcome).toEqual({ kind: "cancelled" });
    expect(h.fake.requests).toHaveLength(1);
  });

  it("kills the whole process group of a running shell command", async () => {
    const command = "sleep 30 & echo $! > child.pid; wait";
    h.fake.enqueue(reply({ toolCalls: [{ id: "c1", name: "run_command", arguments: JSON.stringify({ command }) }] }));
    const controller = new AbortController();
    const running = h.run({ input: "run", signal: controller.signal, capabilities: ["shell.exec"] });
    const pidFile = join(h.workspace, "child.pid");
    expect(await eventually(async () => (await readFile(pidFile, "utf8").catch(() => "")).trim() !== "")).toBe(true);
    const childPid = Number((await readFile(pidFile, "utf8")).trim());
    expect(await processGone(childPid)).toBe(false);

    controller.abort();
    const { outcome, sink } = await running;
    expect(outcome).toEqual({ kind: "cancelled" });
    expect(await eventually(() => processGone(childPid))).toBe(true);
    expect(sink.committed("toolResult")).toMatchObject([
      { toolCallId: "c1", isError: true, output: "The run was cancelled before this tool call finished." },
    ]);
  });
});
