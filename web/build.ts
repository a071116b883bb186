import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

/**
 * Builds the console into dist/web: web/src/main.ts and its npm
 * dependencies (connect-web, the generated code, marked, DOMPurify) bundled
 * and minified by esbuild into app.js, beside index.html and style.css. No
 * CDN: the Backend serves these files itself. Runs as part of `npm run build`
 * (so of `npm install` and `npm start`).
 */
const web = fileURLToPath(new URL("./", import.meta.url));
const out = fileURLToPath(new URL("../dist/web/", import.meta.url));

await mkdir(out, { recursive: true });
const result = await build({
  entryPoints: [`${web}src/main.ts`],
  outfile: `${out}app.js`,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["chrome115", "firefox115", "safari16"],
  minify: true,
  sourcemap: "linked",
  legalComments: "linked",
  metafile: true,
  logLevel: "warning",
  write: false,
});
// Each file replaced whole (temp file, then rename): a running console, or a test build running
// beside another, never serves a half-written app.js.
const replace = async (path: string, contents: Uint8Array): Promise<void> => {
  const temp = `${path}.${process.pid}.tmp`;
  await writeFile(temp, contents);
  await rename(temp, path);
};
for (const file of result.outputFiles) await replace(file.path, file.contents);
await replace(`${out}index.html`, await readFile(`${web}index.html`));
await replace(`${out}style.css`, await readFile(`${web}style.css`));
const bytes = Object.values(result.metafile.outputs).find((output) => output.entryPoint)?.bytes ?? 0;
process.stdout.write(`console bundle: dist/web/app.js ${(bytes / 1024).toFixed(1)} KiB (minified)\n`);
