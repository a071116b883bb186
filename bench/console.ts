import { readFileSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { build } from "esbuild";
import { launchChromium } from "../test/support/chromium.js";
import { WorkerCatalog } from "../gen/worker_runtime/v1/worker_catalog_pb.js";
import { buildConsole, startConsole } from "../test/console/console-process.js";
import { REPO_ROOT } from "../test/support/cli-process.js";
import { startReplyProvider } from "./support/child-processes.js";
import { median, printFigure } from "./support/report.js";

/**
 * The console in headless Chromium against `npm start`'s entry and the fake
 * provider: the bundle's gzip size (target at most 250 KiB), the time from
 * navigation to the first rendered worker list, and the time from pressing
 * Enter to the first streamed token on screen, against a bare connect-web
 * client in the same page timing the first text delta it receives (target at
 * most 1.2x). Rounds alternate console and bare; medians are compared. The
 * provider is a process of its own (bench/support/reply-provider.ts), as in
 * production, not a server inside this process, which also drives the
 * browser.
 */
const ROUNDS = 15;
const REPLY = "first token, then the rest of a short answer";
const BUNDLE_TARGET_KIB = 250;

/** Records in the page when the worker list first shows and when the streaming reply first shows text. */
const RECORDER = `
  window.__marks = {};
  addEventListener("keydown", (event) => { if (event.key === "Enter") window.__marks.sent = performance.now(); }, true);
  new MutationObserver(() => {
    if (!window.__marks.list && document.querySelector(".sidebar .worker")) window.__marks.list = performance.now();
    const live = document.querySelector(".live .entry.assistant");
    if (window.__marks.sent && !window.__marks.token && live && live.textContent.trim()) window.__marks.token = performance.now();
  }).observe(document, { subtree: true, childList: true, characterData: true });
`;

interface Marks {
  list?: number;
  sent?: number;
  token?: number;
}

export async function run(): Promise<void> {
  await buildConsole();
  const files = ["app.js", "style.css", "index.html"].map((name) => readFileSync(join(REPO_ROOT, "dist", "web", name)));
  const gzipKiB = files.reduce((sum, file) => sum + gzipSync(file, { level: 9 }).length, 0) / 1024;
  printFigure("console.bundle_gzip", gzipKiB, "KiB", { ratio: gzipKiB / BUNDLE_TARGET_KIB, target: "<=1" });

  const bare = await build({
    entryPoints: [join(REPO_ROOT, "bench", "support", "console-bare-client.ts")],
    bundle: true,
    format: "iife",
    platform: "browser",
    minify: true,
    write: false,
  });
  const bareScript = bare.outputFiles[0]!.text;

  const provider = await startReplyProvider(REPLY, 4);
  const dataDir = mkdtempSync(join(tmpdir(), "console-bench-"));
  const server = await startConsole(["--port", "0", "--grpc-port", "0", "--data-dir", dataDir], {
    OPENAI_API_KEY: "sk-bench",
    OPENAI_BASE_URL: provider.baseURL,
  });
  const browser = await launchChromium();
  try {
    const catalog = createClient(WorkerCatalog, createGrpcTransport({ baseUrl: `http://${server.h2c}` }));
    const runtimeId = server.cli.stdout().match(/runtime_id=(\S+)/)![1]!;
    const companion = { source: { case: "builtin" as const, value: "companion" } };
    const consoleWorker = (await catalog.createWorker({ runtimeId, displayName: "bench console", profile: companion })).worker!.ref!;
    const bareWorker = (await catalog.createWorker({ runtimeId, displayName: "bench bare", profile: companion })).worker!.ref!;
    // The bare client's script is added to the console's page; CSP allows only the bundle, so it is bypassed for both.
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1200, height: 800 } });

    const listTimes: number[] = [];
    for (let i = 0; i < 5; i++) {
      const page = await context.newPage();
      await page.addInitScript(RECORDER);
      await page.goto(server.url);
      await page.waitForSelector(".sidebar .worker");
      listTimes.push(await page.evaluate(() => (globalThis as unknown as { __marks: Marks }).__marks.list ?? Number.NaN));
      await page.close();
    }
    printFigure("console.navigation_to_worker_list", median(listTimes), "ms");

    const page = await context.newPage();
    await page.addInitScript(RECORDER);
    await page.goto(`${server.url}#/w/${encodeURIComponent(consoleWorker.runtimeId)}/${encodeURIComponent(consoleWorker.workerId)}`);
    await page.waitForSelector(".chat .status:not(:empty)");
    await page.addScriptTag({ content: bareScript });
    const consoleTimes: number[] = [];
    const bareTimes: number[] = [];
    for (let i = 0; i < ROUNDS + 2; i++) {
      await page.evaluate(() => {
        (globalThis as unknown as { __marks: Marks }).__marks = {};
      });
      await page.locator("textarea.input").fill(`round ${i}`);
      await page.keyboard.press("Enter");
      await page.waitForFunction(() => (globalThis as unknown as { __marks: Marks }).__marks.token !== undefined);
      await page.waitForSelector("button.stop", { state: "hidden" });
      const marks = await page.evaluate(() => (globalThis as unknown as { __marks: Marks }).__marks);
      const bareMs = await page.evaluate(
        ([runtime, worker, text]) =>
          (globalThis as unknown as { __bareFirstToken: (r: string, w: string, t: string) => Promise<number> }).__bareFirstToken(
            runtime,
            worker,
            text,
          ),
        [bareWorker.runtimeId, bareWorker.workerId, `round ${i}`] as const,
      );
      if (i < 2) continue; // warm-up
      consoleTimes.push(marks.token! - marks.sent!);
      bareTimes.push(bareMs);
    }
    const consoleMs = median(consoleTimes);
    const bareMs = median(bareTimes);
    printFigure("console.bare_client_first_delta", bareMs, "ms");
    printFigure("console.first_token_on_screen", consoleMs, "ms", {
      ratio: consoleMs / bareMs,
      target: "<=1.2",
    });
  } finally {
    await browser.close();
    server.cli.kill();
    await server.cli.exited;
    await provider.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
