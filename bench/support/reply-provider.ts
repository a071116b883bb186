import { startFakeOpenAI } from "../../test/support/fake-openai.js";
import { reply } from "../../test/support/openai-chunks.js";

/**
 * A fake provider in its own process that answers every request with the
 * same short streamed reply (argv: the text, then the piece size), for the
 * console bench: a provider inside the bench process would share its event
 * loop with the code driving the browser. Prints its base URL on stdout.
 */
const text = process.argv[2] ?? "";
const pieceSize = Number(process.argv[3] ?? "4");
const fake = await startFakeOpenAI();
fake.setFallback(reply({ text, pieceSize }));
process.stdout.write(`${fake.baseURL}\n`);
