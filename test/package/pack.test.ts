import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { execFile } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { RuntimeStatus } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { REPO_ROOT, startCli } from "../support/cli-process.js";
import { startFakeOpenAI } from "../support/fake-openai.js";
import { reply } from "../support/openai-chunks.js";

/**
 * The package as a user gets it: `npm run build`, then what `npm pack` puts
 * in the tarball, then that tarball installed without dev dependencies (so no
 * tsx, no TypeScript) and its CLI and library entry points loaded by plain
 * Node. Slow (a build and an install), so it runs in the slow project.
 */

const run = promisify(execFile);

/** The parts of package.json this test checks against the tarball. */
interface Manifest {
  name: string;
  bin: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
}

/** One entry of `npm pack --json`. */
interface PackResult {
  filename: string;
  files: { path: string }[];
}

const npm = (args: readonly string[], cwd: string): Promise<{ stdout: string }> =>
  run("npm", [...args], { cwd, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, NODE_OPTIONS: "" } });

/** A NODE_OPTIONS that loads nothing, so only plain Node runs the package. */
const PLAIN_NODE = { NODE_OPTIONS: "" };

let manifest: Manifest;
let files: string[];
let scratch: string;

beforeAll(async () => {
  manifest = JSON.parse(await readFile(join(REPO_ROOT, "package.json"), "utf8")) as Manifest;
  await npm(["run", "build"], REPO_ROOT);
  const { stdout } = await npm(["pack", "--dry-run", "--json", "--ignore-scripts"], REPO_ROOT);
  files = (JSON.parse(stdout) as PackResult[])[0]?.files.map((file) => file.path) ?? [];
  scratch = await mkdtemp(join(tmpdir(), "worker-runtime-pack-"));
}, 180_000);

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe("npm pack", () => {
  it("holds dist/ with a declaration beside every module, gen/ as JavaScript, and the protos", () => {
    const modules = files.filter((file) => file.startsWith("dist/") && file.endsWith(".js"));
    expect(modules).toContain("dist/cli/main.js");
    expect(modules).toContain("dist/runtime/index.js");
    for (const module of modules) expect(files).toContain(module.replace(/\.js$/, ".d.ts"));
    const generated = files.filter((file) => file.startsWith("gen/") && file.endsWith("_pb.js"));
    expect(generated).toContain("gen/worker_runtime/v1/worker_catalog_pb.js");
    for (const module of generated) expect(files).toContain(module.replace(/\.js$/, ".d.ts"));
    expect(files).toContain("proto/api/worker_runtime/v1/worker_catalog.proto");
  });

  it("holds no sources, tests, benches, CI scripts or build state", () => {
    const allowed =
      /^(dist\/.+\.(js|d\.ts)|gen\/.+_pb\.(js|d\.ts)|gen\/descriptor-set\.(js|d\.ts)|proto\/.+\.proto|package\.json|README\.md|LICENSE)$/;
    expect(files.filter((file) => !allowed.test(file))).toEqual([]);
  });

  it("holds every file its exports and bin name", () => {
    const targets = [
      ...Object.values(manifest.bin),
      ...Object.entries(manifest.exports)
        .filter(([subpath]) => !subpath.includes("*"))
        .flatMap(([, target]) => (typeof target === "string" ? [target] : Object.values(target))),
    ].map((target) => target.replace(/^\.\//, ""));
    expect(targets).toContain("dist/cli/main.js");
    for (const target of targets) expect(files).toContain(target);
  });

  it("builds the bin executable, so `npx worker-runtime` in the checkout runs it (tsc writes files without the x bit)", () => {
    for (const target of Object.values(manifest.bin)) {
      expect(statSync(join(REPO_ROOT, target)).mode & 0o111, target).toBe(0o111);
    }
  });

  it("makes the protobuf and connect runtimes peer dependencies and tsx no dependency", () => {
    expect(Object.keys(manifest.peerDependencies).sort()).toEqual(["@bufbuild/protobuf", "@connectrpc/connect"]);
    expect(Object.keys(manifest.dependencies)).not.toContain("tsx");
    expect(Object.keys(manifest.dependencies)).not.toContain("@bufbuild/protobuf");
  });
});

describe("the installed package, without dev dependencies", () => {
  let app: string;
  beforeAll(async () => {
    const { stdout } = await npm(["pack", "--json", "--ignore-scripts", "--pack-destination", scratch], REPO_ROOT);
    const tarball = join(scratch, (JSON.parse(stdout) as PackResult[])[0]?.filename ?? "");
    app = join(scratch, "app");
    await mkdir(app);
    await writeFile(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    await npm(["install", "--omit=dev", "--prefer-offline", "--no-audit", "--no-fund", tarball], app);
  }, 180_000);

  it("has its peers installed and no TypeScript loader", () => {
    for (const present of ["worker-runtime", "@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node", "openai"]) {
      expect(existsSync(join(app, "node_modules", present, "package.json")), present).toBe(true);
    }
    for (const absent of ["tsx", "typescript", "vitest"]) {
      expect(existsSync(join(app, "node_modules", absent)), absent).toBe(false);
    }
  });

  it("starts `node dist/cli/main.js serve` under plain Node, answers, and exits 0 on SIGTERM", async () => {
    const packageDir = join(app, "node_modules", manifest.name);
    const cli = startCli(["serve", "--host", "127.0.0.1", "--port", "0", "--http1-port", "0"], PLAIN_NODE, {
      nodeArgs: ["dist/cli/main.js"],
      cwd: packageDir,
    });
    try {
      const listening = await cli.listening;
      const management = createClient(
        RuntimeManagement,
        createConnectTransport({ baseUrl: `http://${listening.http1}`, httpVersion: "1.1" }),
      );
      const { runtime } = await management.getRuntime({});
      expect(runtime?.runtimeId).toBe(listening.runtimeId);
      expect(runtime?.status).toBe(RuntimeStatus.SERVING);
      cli.child.kill("SIGTERM");
      expect(await cli.exited).toEqual({ code: 0, signal: null });
    } finally {
      cli.kill();
    }
  });

  it("serves every library entry point to plain Node", async () => {
    const subpaths = Object.keys(manifest.exports).filter((subpath) => !subpath.includes("*"));
    const script = `
      const names = ${JSON.stringify(subpaths.map((subpath) => subpath.replace(/^\./, manifest.name)))};
      const loaded = {};
      for (const name of names) loaded[name] = Object.keys(await import(name)).length;
      loaded.gen = Object.keys(await import("${manifest.name}/gen/worker_runtime/v1/worker_catalog_pb.js")).length;
      console.log(JSON.stringify(loaded));
    `;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
      cwd: app,
      env: { ...process.env, ...PLAIN_NODE },
    });
    const exported = JSON.parse(stdout) as Record<string, number>;
    expect(Object.keys(exported)).toHaveLength(subpaths.length + 1);
    for (const [name, count] of Object.entries(exported)) expect(count, name).toBeGreaterThan(0);
  });
  it("runs the README's library example under plain Node, and its types check against the installed declarations", async () => {
    const readme = await readFile(join(REPO_ROOT, "README.md"), "utf8");
    const example = /## Using it as a library\n+```ts\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
    expect(example).toContain("createRuntime");
    // Type annotations would not run under plain Node: the example is TypeScript that is also JavaScript.
    await writeFile(join(app, "readme-library.mts"), example);
    await writeFile(join(app, "readme-library.mjs"), example);
    const program = ts.createProgram([join(app, "readme-library.mts")], {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2023,
      lib: ["lib.es2023.d.ts"],
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: ["node"],
      typeRoots: [join(REPO_ROOT, "node_modules", "@types")],
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    expect(problems).toEqual([]);
    const fake = await startFakeOpenAI();
    try {
      fake.enqueue(reply({ text: "Hello from the fake provider." }));
      const env = { ...process.env, ...PLAIN_NODE, OPENAI_API_KEY: "sk-readme", OPENAI_BASE_URL: fake.baseURL };
      const { stdout } = await run(process.execPath, ["readme-library.mjs"], { cwd: app, env, timeout: 60_000 });
      expect(stdout).toBe("Hello from the fake provider.");
      expect(fake.requests).toHaveLength(1);
    } finally {
      await fake.close();
    }
  });
});
