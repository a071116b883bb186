import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startFakeOpenAI, type FakeOpenAI } from "../../support/fake-openai.js";
import { startCli, type CliProcess } from "../../support/cli-process.js";
import { eventually } from "../../support/harness.js";
import { reply } from "../../support/openai-chunks.js";
import { completedRuns, printedJsonLines, serveRuntime, startClient, type ServedRuntime } from "./client-support.js";

/**
 * `watch` through a Backend outlives both the Backend and the runtime behind
 * it: while the Backend is back but the runtime is not yet, the Backend
 * answers RUNTIME_UNAVAILABLE, which says "not now", so the watch keeps
 * reconnecting and resumes once the runtime is back.
 */

const dir = mkdtempSync(path.join(tmpdir(), "wr-cli-watch-backend-"));
const dataDir = path.join(dir, "data");
let fake: FakeOpenAI | undefined;
const runtimes: ServedRuntime[] = [];
const backends: CliProcess[] = [];

afterAll(async () => {
  for (const backend of backends) {
    backend.child.kill("SIGTERM");
    await Promise.race([backend.exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    backend.kill();
  }
  for (const rt of runtimes) await rt.close();
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

function startBackend(config: string, port: number): CliProcess {
  const backend = startCli(
    ["backend", "--host", "127.0.0.1", "--port", String(port), "--runtime-id", "rt-embedded"].concat(["--config", config]),
  );
  backends.push(backend);
  return backend;
}

async function stopBackend(backend: CliProcess): Promise<void> {
  backend.child.kill("SIGTERM");
  await backend.exited;
}

describe("watch through a Backend whose runtime is away", () => {
  it("keeps reconnecting through RUNTIME_UNAVAILABLE and resumes when the runtime is back", async () => {
    fake = await startFakeOpenAI();
    const first = await serveRuntime({ dataDir, fake, runtimeId: "rt-remote" });
    runtimes.push(first);
    const runtimePort = Number(first.url.split(":").pop());
    const config = path.join(dir, "backend.json");
    writeFileSync(config, JSON.stringify({ runtimes: [{ id: "rt-remote", url: first.url }] }));
    const backend = startBackend(config, 0);
    const backendAddress = (await backend.listening).h2c;
    const backendPort = Number(backendAddress.split(":").pop());
    const { worker } = await first.clients.catalog.createWorker({
      runtimeId: "rt-remote",
      profile: { source: { case: "builtin", value: "companion" } },
    });
    const workerId = worker?.ref?.workerId ?? "";

    const watch = startClient(["watch", workerId, "--runtime", "rt-remote", "--output", "json"], { server: `http://${backendAddress}` });
    try {
      await eventually(() => watch.stdout().includes('"snapshot"'), 30_000, "the snapshot");

      // The runtime goes, then the Backend restarts while the runtime is still away.
      await first.close();
      await stopBackend(backend);
      await eventually(() => watch.stderr().includes("reconnecting"), 30_000, "the disconnect");
      const second = startBackend(config, backendPort);
      await second.listening;
      // The Backend is back and answers the watch RUNTIME_UNAVAILABLE ("runtime rt-remote is
      // unavailable"): the watch must go on reconnecting, not end.
      const unavailable = /runtime rt-remote is unavailable/g;
      await eventually(
        () => (watch.stderr().match(unavailable) ?? []).length >= 2 || watch.child.exitCode !== null,
        30_000,
        "the Backend's answer, twice",
      );
      expect(watch.child.exitCode).toBeNull();
      expect(watch.stderr()).toMatch(/watch disconnected \(runtime rt-remote is unavailable\); reconnecting/);

      const back = await serveRuntime({ dataDir, fake, runtimeId: "rt-remote", port: runtimePort });
      runtimes.push(back);
      await eventually(() => watch.stderr().includes("watch resumed"), 60_000, "the watch resumed through the Backend");
      fake.enqueue(reply({ text: "After both came back." }));
      await back.clients.interaction.sendInput({ worker: { runtimeId: "rt-remote", workerId }, input: { text: "one" } });
      await eventually(() => completedRuns(printedJsonLines(watch.stdout())) === 1, 30_000, "the run, in the watch through the Backend");
      expect(watch.stderr()).toContain("watch resumed");
    } finally {
      watch.kill();
    }
  });
});
