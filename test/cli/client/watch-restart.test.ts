import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startFakeOpenAI, type FakeOpenAI } from "../../support/fake-openai.js";
import { eventually } from "../../support/harness.js";
import { reply } from "../../support/openai-chunks.js";
import { completedRuns, printedJsonLines, serveRuntime, startClient, type ServedRuntime } from "./client-support.js";

/**
 * `watch` outlives its runtime: the runtime (file store) stops and starts
 * again on the same port, the watch reconnects with backoff and resumes
 * after the last cursor it printed, and what it printed is exactly what a
 * direct watch from the same starting point sees — no gap, no duplicate.
 */

const dataDir = mkdtempSync(path.join(tmpdir(), "wr-cli-watch-"));
let fake: FakeOpenAI | undefined;
const runtimes: ServedRuntime[] = [];

afterAll(async () => {
  for (const rt of runtimes) await rt.close();
  await fake?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Cursors of the durable events among JSON lines (deltas carry none). */
function durableCursors(lines: Record<string, unknown>[]): string[] {
  return lines.flatMap((line) => {
    const event = line.event as { cursor?: string } | undefined;
    return event?.cursor ? [event.cursor] : [];
  });
}

describe("watch across a runtime restart", () => {
  it("reconnects and resumes by cursor without a gap", async () => {
    fake = await startFakeOpenAI();
    const first = await serveRuntime({ dataDir, fake, runtimeId: "rt-watch" });
    runtimes.push(first);
    const port = Number(first.url.split(":").pop());
    const { worker } = await first.clients.catalog.createWorker({
      runtimeId: "rt-watch",
      profile: { source: { case: "builtin", value: "companion" } },
    });
    const ref = { runtimeId: "rt-watch", workerId: worker?.ref?.workerId ?? "" };

    const watch = startClient(["watch", ref.workerId, "--output", "json"], { server: first.url });
    try {
      await eventually(() => watch.stdout().includes('"snapshot"'), 30_000, "the snapshot");
      const snapshotCursor = (printedJsonLines(watch.stdout())[0]?.snapshot as { cursor?: string } | undefined)?.cursor ?? "";
      expect(snapshotCursor).not.toBe("");

      fake.enqueue(reply({ text: "Before the restart." }));
      await first.clients.interaction.sendInput({ worker: ref, input: { text: "one" } });
      await eventually(() => completedRuns(printedJsonLines(watch.stdout())) === 1, 30_000, "the first run in the watch");

      await first.close();
      await eventually(() => watch.stderr().includes("reconnecting"), 30_000, "the disconnect");

      const second = await serveRuntime({ dataDir, fake, runtimeId: "rt-watch", port });
      runtimes.push(second);
      fake.enqueue(reply({ text: "After the restart." }));
      await second.clients.interaction.sendInput({ worker: ref, input: { text: "two" } });
      await eventually(() => completedRuns(printedJsonLines(watch.stdout())) === 2, 30_000, "the second run in the watch");
      expect(watch.stderr()).toContain("watch resumed");

      const printed = durableCursors(printedJsonLines(watch.stdout()));
      expect(new Set(printed).size).toBe(printed.length);
      const lastPrinted = printed.at(-1);

      // A direct watch from the same start, read up to the last event the CLI printed and no further:
      // the CLI may not have printed the events after it yet (the worker's IDLE change comes just after
      // the run's end), while the direct watch's replay hands them over in the same message.
      const direct: string[] = [];
      const abort = new AbortController();
      read: for await (const response of second.clients.observation.watchWorker(
        { worker: ref, afterCursor: snapshotCursor },
        { signal: abort.signal },
      )) {
        for (const event of response.events) {
          if (!event.cursor) continue;
          direct.push(event.cursor);
          if (event.cursor === lastPrinted) break read;
        }
      }
      abort.abort();
      expect(printed).toEqual(direct);
      // Both runs' user messages and replies are among them.
      const texts = printedJsonLines(watch.stdout()).flatMap((line) => {
        const appended = (line.event as { transcriptAppended?: { assistantMessage?: { text: string } } } | undefined)?.transcriptAppended;
        return appended?.assistantMessage ? [appended.assistantMessage.text] : [];
      });
      expect(texts).toEqual(["Before the restart.", "After the restart."]);
    } finally {
      watch.kill();
    }
  });
});
