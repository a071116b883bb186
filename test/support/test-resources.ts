import { rm } from "node:fs/promises";
import type { FakeOpenAI } from "./fake-openai.js";
import type { Harness } from "./harness.js";

/**
 * Closes what one test started (its harness's server, then its runtime, then
 * the fake provider) and removes its data directory; any of them may be
 * absent, as when the test failed before starting it.
 */
export async function closeTestResources(h: Harness | undefined, fake: FakeOpenAI | undefined, dir: string | undefined): Promise<void> {
  await h?.close();
  await h?.runtime.close();
  await fake?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
}
