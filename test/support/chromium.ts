import { type Browser, chromium } from "playwright-core";
import { boundPageLoads } from "./page-loads.js";

/**
 * Headless Chromium as the console tests and the console bench drive it:
 * Debian's `chromium` (or CHROMIUM_PATH) with the flags that keep it from
 * reaching the network or needing a sandbox and a GPU, plus `extraArgs`
 * (e.g. `--ignore-certificate-errors` for a test's self-signed certificate).
 * Its pages' loads are bounded and say what did not load (page-loads.ts).
 */
export async function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      ...extraArgs,
    ],
  });
  boundPageLoads(browser);
  return browser;
}
