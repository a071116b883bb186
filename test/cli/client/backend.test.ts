import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCli, type CliProcess } from "../../support/cli-process.js";
import { eventually } from "../../support/harness.js";
import { reply } from "../../support/openai-chunks.js";
import {
  type ClientResult,
  jsonLines,
  printedJsonLines,
  runClient,
  serveRuntime,
  startClient,
  type ServedRuntime,
} from "./client-support.js";

/**
 * The list, send and watch commands against a real `worker-runtime backend`
 * process: an embedded runtime plus one remote `serve` process. The client
 * finds the registry, asks for --runtime because there are two, and its
 * calls are routed to the runtime named.
 */

let remote: ServedRuntime;
let backend: CliProcess;
let url: string;
const dir = mkdtempSync(path.join(tmpdir(), "wr-cli-backend-"));

beforeAll(async () => {
  remote = await serveRuntime({ runtimeId: "rt-remote" });
  const config = path.join(dir, "backend.json");
  writeFileSync(config, JSON.stringify({ runtimes: [{ id: "rt-remote", url: remote.url }] }));
  backend = startCli([
    "backend",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--runtime-id",
    "rt-embedded",
    "--config",
    config,
    "--shutdown-grace-ms",
    "200",
    "--openai-base-url",
    remote.fake.baseURL,
    "--openai-keyless",
  ]);
  url = `http://${(await backend.listening).h2c}`;
});

afterAll(async () => {
  backend?.child.kill("SIGTERM");
  await Promise.race([backend?.exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
  backend?.kill();
  await remote?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("against a real Backend", () => {
  it("runtimes list shows both runtimes; workers list without --runtime lists both, other calls ask for one", async () => {
    let listed: Record<string, unknown>[] = [];
    await eventually(
      async () => {
        listed = jsonLines((await runClient(["runtimes", "list", "--output", "json"], { server: url })).stdout);
        return listed.length === 2 && listed.every((entry) => entry.health === "RUNTIME_HEALTH_READY");
      },
      30_000,
      "both runtimes ready",
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}: ${JSON.stringify(listed)}`);
    });
    expect(listed.map((entry) => entry.runtimeId).sort()).toEqual(["rt-embedded", "rt-remote"]);
    const ids: Record<string, string> = {};
    for (const runtimeId of ["rt-embedded", "rt-remote"]) {
      const created = await runClient(["workers", "create", "--profile", "companion", "--runtime", runtimeId], { server: url });
      expect(created.code).toBe(0);
      ids[runtimeId] = created.stdout.trim();
    }
    // The Backend's listing across its runtimes, each row naming its runtime first.
    const across = await runClient(["workers", "list"], { server: url });
    expect(across).toMatchObject({ code: 0, stderr: "" });
    const rows = across.stdout
      .trim()
      .split("\n")
      .map((line) => line.split("\t").slice(0, 2));
    expect(rows).toContainEqual(["rt-embedded", ids["rt-embedded"]]);
    expect(rows).toContainEqual(["rt-remote", ids["rt-remote"]]);
    const ambiguous = await runClient(["runtime", "info"], { server: url });
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toContain("choose one with --runtime");
    // Six CLI processes from source: 35 s on a machine shared with a CI run.
  }, 120_000);

  it("a --runtime the Backend does not have: NOT_FOUND naming the runtimes it has, exit 5, in the words a runtime's gets", async () => {
    const sentence =
      'worker-runtime: --runtime "rt-wrong" is not a runtime of this server (it has rt-embedded, rt-remote) (reason: NOT_FOUND)\n';
    // The Backend refuses workers list; runtime info finds it missing from the registry itself: one sentence.
    for (const args of [
      ["workers", "list"],
      ["runtime", "info"],
    ]) {
      const wrong = await runClient([...args, "--runtime", "rt-wrong"], { server: url });
      expect(wrong, args.join(" ")).toMatchObject({ code: 5, stdout: "", stderr: sentence });
    }
    const json = await runClient(["workers", "list", "--runtime", "rt-wrong", "--output", "json"], { server: url });
    expect(JSON.parse(json.stderr)).toEqual({
      error: {
        code: "NotFound",
        reason: "NOT_FOUND",
        message: '--runtime "rt-wrong" is not a runtime of this server (it has rt-embedded, rt-remote)',
      },
    });
  });

  it("creates, lists, sends and watches on the runtime named, through the Backend", async () => {
    const created = await runClient(["workers", "create", "--profile", "companion", "--runtime", "rt-remote"], { server: url });
    expect(created.code).toBe(0);
    const id = created.stdout.trim();
    // It lives on the remote runtime itself.
    const { worker } = await remote.clients.catalog.getWorker({ worker: { runtimeId: "rt-remote", workerId: id } });
    expect(worker?.ref?.workerId).toBe(id);
    const list = await runClient(["workers", "list", "--runtime", "rt-remote"], { server: url });
    const diagnostics = await runClient(["runtime", "diagnostics", "--runtime", "rt-remote", "--output", "json"], { server: url });
    expect(diagnostics.code).toBe(0);
    const { diagnostics: onRemote } = await remote.clients.management.listDiagnostics({});
    expect(jsonLines(diagnostics.stdout).map((entry) => entry.code)).toEqual(onRemote.map((entry) => entry.code));
    expect(list.stdout.split("\n").map((line) => line.split("\t")[0])).toContain(id);

    const watch = startClient(["watch", id, "--runtime", "rt-remote", "--output", "json"], { server: url });
    try {
      await eventually(() => watch.stdout().includes('"snapshot"'), 30_000, "the snapshot through the Backend");
      remote.fake.enqueue(reply({ text: "Routed reply." }));
      const sent = await runClient(["send", id, "hello", "--runtime", "rt-remote"], { server: url });
      expect(sent).toMatchObject({ code: 0, stdout: "Routed reply.\n" });
      await eventually(
        () =>
          printedJsonLines(watch.stdout()).some(
            (line) =>
              (line.event as { transcriptAppended?: { assistantMessage?: { text: string } } } | undefined)?.transcriptAppended
                ?.assistantMessage?.text === "Routed reply.",
          ),
        30_000,
        "the reply in the watch",
      );
    } finally {
      watch.kill();
    }
  });
});

describe("a runtime behind the Backend that went away (runs last: it stops the remote)", () => {
  it("exits 3, as an unreachable server does: a script should retry, not fix its command", async () => {
    remote.process.child.kill("SIGKILL");
    await remote.process.exited;
    let listed: ClientResult | undefined;
    await eventually(
      async () => {
        listed = await runClient(["workers", "list", "--runtime", "rt-remote"], { server: url });
        return listed.stderr.includes("RUNTIME_UNAVAILABLE");
      },
      30_000,
      "the Backend to see the runtime gone",
    );
    expect(listed?.stderr).toMatch(/^worker-runtime: .* \(reason: RUNTIME_UNAVAILABLE\)\n$/);
    expect(listed?.code).toBe(3);
  });
});
