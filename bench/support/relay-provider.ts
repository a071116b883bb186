import { startFakeOpenAI } from "../../test/support/fake-openai.js";
import { replyChunks } from "../../test/support/openai-chunks.js";

/**
 * The relay bench's provider, in its own process: a paced fake provider
 * sharing the event loop with the runtime would be slowed by the very work
 * being measured. Prints its base URL on stdout, then serves every request
 * the same `TOKENS`-token reply, one token per `PACE_MS`, until killed.
 */
const tokens = Number(process.argv[2] ?? "1000");
const paceMs = Number(process.argv[3] ?? "1");
const fake = await startFakeOpenAI();
const text = Array.from({ length: tokens }, (_, i) => `t${i % 10} `).join("");
fake.setFallback({
  kind: "stream",
  chunks: replyChunks({ text, pieceSize: 3, usage: { prompt: 10, completion: tokens } }),
  delayMs: paceMs,
});
process.stdout.write(`${fake.baseURL}\n`);
