import { copyFile, mkdir } from "node:fs/promises";
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
});
await copyFile(`${web}index.html`, `${out}index.html`);
await copyFile(`${web}style.css`, `${out}style.css`);
const bytes = Object.values(result.metafile.outputs).find((output) => output.entryPoint)?.bytes ?? 0;
process.stdout.write(`console bundle: dist/web/app.js ${(bytes / 1024).toFixed(1)} KiB (minified)\n`);
