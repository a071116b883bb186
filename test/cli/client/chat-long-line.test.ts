import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT, startCli, type CliProcess } from "../../support/cli-process.js";
import { eventually } from "../../support/harness.js";
import { MAX_RSS_FILE_VARIABLE } from "../../support/max-rss-report.js";
import { reply } from "../../support/openai-chunks.js";
import { runClient, serveRuntime, type ServedRuntime } from "./client-support.js";

/**
 * `chat` reads lines from a pipe as `send` reads stdin: a line longer than
 * the runtime's max_input_bytes is refused as soon as it passes the limit,
 * with the same typed error, and the rest of it is dropped as it arrives
 * rather than held; the loop then goes on with the next line. A 200 MB
 * line with no newline used to be held whole (about 450 MB more resident
 * memory) before it was even checked.
 */

/** The runtime's default max_input_bytes. */
const LIMIT = 262_144;
const MIB = 1024 * 1024;
/** The long line, far past the limit: held whole, it would dwarf the margin below. */
const LINE_MIB = 200;
/**
 * Peak memory the long line may add over a chat of one short line (KiB, as
 * maxRSS counts): half the line. Dropped as it arrives it adds about 40 MB
 * (chunks waiting for the collector); held whole it added over 400 MB.
 */
const MARGIN_KIB = (LINE_MIB / 2) * 1024;

let rt: ServedRuntime;
let worker: string;
const scratch = mkdtempSync(path.join(tmpdir(), "wr-chat-line-"));

beforeAll(async () => {
  rt = await serveRuntime();
  worker = (await runClient(["workers", "create", "--profile", "companion"], { server: rt.url })).stdout.trim();
});

afterAll(async () => {
  await rt?.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** `chat` as a user runs it, reporting its peak resident memory to `rssFile` when it exits. */
function startChat(rssFile: string): CliProcess {
  const entry = { nodeArgs: ["--import", "tsx", "--import", "./test/support/max-rss-report.ts", "src/cli/main.ts"], cwd: REPO_ROOT };
  const chat = startCli(["chat", worker], { NO_COLOR: "", WORKER_RUNTIME_SERVER: rt.url, [MAX_RSS_FILE_VARIABLE]: rssFile }, entry);
  chat.child.stdin.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
  });
  return chat;
}

/** Writes `chunk`, waiting while the pipe is full: the test never holds more than one chunk either. */
async function write(stream: Writable, chunk: Buffer | string): Promise<void> {
  if (!stream.write(chunk)) await once(stream, "drain");
}

const maxRssKiB = (file: string): number => Number(readFileSync(file, "utf8"));

describe("chat: a line over the input limit", () => {
  it("a 200 MB line is refused while it is still arriving, is not held, and the loop goes on", async () => {
    // What one short line costs, for comparison.
    const baselineFile = path.join(scratch, "baseline");
    rt.fake.enqueue(reply({ text: "short" }));
    const short = startChat(baselineFile);
    short.child.stdin.end("hi\n");
    expect(await short.exited).toEqual({ code: 0, signal: null });
    expect(short.stdout()).toBe("short\n");

    const longFile = path.join(scratch, "long");
    rt.fake.enqueue(reply({ text: "fine" }));
    const chat = startChat(longFile);
    const chunk = Buffer.alloc(MIB, "b");
    let written = 0;
    try {
      for (; written * MIB <= LIMIT; written++) await write(chat.child.stdin, chunk);
      // The line has no end yet: the refusal must not wait for one.
      await eventually(() => chat.stderr().includes("LIMIT_EXCEEDED"), 30_000, "the refusal while the line is still being written");
      for (; written < LINE_MIB; written++) await write(chat.child.stdin, chunk);
      chat.child.stdin.end("\nhello\n");
      expect(await chat.exited).toEqual({ code: 0, signal: null });
    } finally {
      chat.kill();
    }
    expect(chat.stderr()).toBe(
      `worker-runtime: the line is more than ${LIMIT} bytes; at most ${LIMIT} allowed (the runtime's max_input_bytes) (reason: LIMIT_EXCEEDED)\n`,
    );
    // Only the next line was sent.
    expect(chat.stdout()).toBe("fine\n");
    const transcript = await rt.clients.observation.readTranscript({ worker: { runtimeId: rt.runtimeId, workerId: worker } });
    expect(transcript.entries.at(-2)?.content).toMatchObject({ case: "userMessage", value: { text: "hello" } });
    expect(maxRssKiB(longFile) - maxRssKiB(baselineFile)).toBeLessThan(MARGIN_KIB);
  }, 120_000);
});
