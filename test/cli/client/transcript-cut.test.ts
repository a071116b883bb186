import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { damageActiveSegmentMiddle } from "../../support/damaged-segment.js";
import { type FakeOpenAI, startFakeOpenAI } from "../../support/fake-openai.js";
import { replyChunks } from "../../support/openai-chunks.js";
import { jsonLines, runClient, serveRuntime, type ServedRuntime } from "./client-support.js";

/**
 * `transcript` of a worker whose stored transcript the runtime's open found
 * damaged in the middle: it printed the entries before the damage and
 * exited 0, so a user took them for the whole conversation. It still
 * prints them, then says on stderr where the readable part ends and what to
 * do, and exits 10; with --output json the last line carries the cut.
 */

const dataDir = mkdtempSync(path.join(tmpdir(), "wr-cli-cut-"));
let fake: FakeOpenAI;
let rt: ServedRuntime;
let worker: string;

beforeAll(async () => {
  fake = await startFakeOpenAI();
  fake.setFallback({ kind: "stream", chunks: replyChunks({ text: "answered", usage: { prompt: 1, completion: 1 } }) });
  const first = await serveRuntime({ dataDir, fake, runtimeId: "rt-cut" });
  const cli = (...args: string[]) => runClient(args, { server: first.url });
  worker = (await cli("workers", "create", "--profile", "companion")).stdout.trim();
  for (let i = 0; i < 4; i++) expect((await cli("send", worker, `message ${i}`)).code).toBe(0);
  await first.close();
  await damageActiveSegmentMiddle(path.join(dataDir, "workers", worker));
  rt = await serveRuntime({ dataDir, fake, runtimeId: "rt-cut" });
}, 60_000);

afterAll(async () => {
  await rt?.close();
  await fake?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const cli = (...args: string[]) => runClient(args, { server: rt.url });

describe("transcript of a transcript cut short by damage", () => {
  it("prints the readable entries, names the cut on stderr, exits 10", async () => {
    const { cut, lastSeq } = await rt.clients.observation.readTranscript({ worker: { runtimeId: rt.runtimeId, workerId: worker } });
    expect(cut?.readableThroughSeq).toBe(lastSeq);
    for (const args of [[], ["--tail", "2"], ["--after", "1"]]) {
      const result = await cli("transcript", worker, ...args);
      expect(result.code, args.join(" ")).toBe(10);
      expect(result.stdout).toContain("answered");
      expect(result.stderr).toBe(
        `worker-runtime: the transcript ends at entry ${lastSeq}, cut short: ${cut?.message} (reason: WORKER_FAILED)\n`,
      );
    }
  });

  it("--output json: the entries, then a line carrying the cut; exit 10", async () => {
    const result = await cli("transcript", worker, "--output", "json");
    expect(result.code).toBe(10);
    const lines = jsonLines(result.stdout);
    const last = lines.at(-1);
    expect(last).toEqual({
      cut: { readableThroughSeq: expect.any(String), reason: "ERROR_REASON_WORKER_FAILED", message: expect.stringMatching(/damaged/) },
    });
    expect(lines.slice(0, -1).every((line) => typeof line.seq === "string")).toBe(true);
    expect(String(lines.at(-2)?.seq)).toBe((last as { cut: { readableThroughSeq: string } }).cut.readableThroughSeq);
  });
});
