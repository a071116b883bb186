import { readdir } from "node:fs/promises";
import { availableParallelism } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * `npm run bench -- NAME` runs `bench/NAME.ts`; with no name, every bench.
 * Each bench module exports `run()` and prints its own figure lines, so
 * benches stay independent and can be added without touching this file.
 */
interface BenchModule {
  run: () => Promise<void>;
}

const here = path.dirname(fileURLToPath(import.meta.url));

async function main(): Promise<void> {
  const requested = process.argv.slice(2).filter((arg) => arg !== "--");
  const names =
    requested.length > 0
      ? requested
      : (await readdir(here))
          .filter((f) => f.endsWith(".ts") && f !== "run.ts")
          .map((f) => f.slice(0, -3))
          .sort();
  // Figures move with the Node version and the machine: every run says which it measured.
  console.log(`# node ${process.version} (${process.platform} ${process.arch}), ${availableParallelism()} cores`);
  for (const name of names) {
    if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`not a bench name: ${name}`);
    const module = (await import(path.join(here, `${name}.ts`))) as BenchModule;
    console.log(`# ${name}`);
    await module.run();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
