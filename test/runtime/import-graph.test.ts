import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * The core must stay embeddable: nothing reachable from `src/runtime/**`
 * may pull in a network server, the file store, the model client or the
 * CLI. This walks the real import graph (static imports, `export ... from`,
 * side-effect and literal dynamic imports), following relative specifiers
 * into whatever files they reach, including `gen/`.
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const RUNTIME_DIR = path.join(ROOT, "src", "runtime");

/**
 * Bare specifiers the core must never import (with or without the node:
 * prefix), nor any subpath of them (`openai/resources`, `node:fs/promises`).
 */
const FORBIDDEN_SPECIFIERS = [
  "node:http",
  "http",
  "node:http2",
  "http2",
  "node:net",
  "net",
  "node:https",
  "https",
  "node:fs",
  "fs",
  "@connectrpc/connect-node",
  "openai",
];

/** Whether a bare specifier is a forbidden module or one of its subpaths. */
function isForbidden(specifier: string): boolean {
  return FORBIDDEN_SPECIFIERS.some((forbidden) => specifier === forbidden || specifier.startsWith(`${forbidden}/`));
}

/** The folders outside the core that use it; they must import it through src/runtime/index.ts only. */
const EDGE_DIRS = ["src/server", "src/store", "src/engine", "src/cli", "bench", "test/support"].map((dir) => path.join(ROOT, dir));
const CORE_INDEX = path.join(RUNTIME_DIR, "index.ts");
/** Source folders the core must never reach. */
const FORBIDDEN_DIRS = ["server", "store", "engine", "cli"].map((dir) => path.join(ROOT, "src", dir) + path.sep);

/** Removes comments so that doc text mentioning imports is not read as code. */
function stripComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

/** Every module specifier a TypeScript source imports or re-exports. */
function specifiersOf(source: string): { specifiers: string[]; nonLiteralDynamicImports: number } {
  const code = stripComments(source);
  const specifiers: string[] = [];
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?[^;'"]*?\bfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const pattern of patterns) {
    for (const match of code.matchAll(pattern)) if (match[1]) specifiers.push(match[1]);
  }
  const nonLiteralDynamicImports = [...code.matchAll(/\bimport\s*\(\s*(?!["'])/g)].length;
  return { specifiers, nonLiteralDynamicImports };
}

/** Resolves a relative specifier the way nodenext + tsx do (`.js` written, `.ts` on disk). */
function resolveRelative(fromFile: string, specifier: string): string {
  const target = path.resolve(path.dirname(fromFile), specifier);
  const candidates = [target.replace(/\.js$/, ".ts"), target, `${target}.ts`, path.join(target, "index.ts")];
  const found = candidates.find((candidate) => existsSync(candidate) && !candidate.endsWith(path.sep));
  if (!found) throw new Error(`cannot resolve "${specifier}" from ${path.relative(ROOT, fromFile)}`);
  return found;
}

function listTs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return listTs(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

interface ImportGraph {
  /** Every file reached, relative to the repo root. */
  files: Set<string>;
  /** Bare specifier → the files importing it. */
  external: Map<string, Set<string>>;
  /** Files with `import(expr)` that cannot be followed. */
  unfollowable: string[];
}

function importGraph(entries: string[]): ImportGraph {
  const graph: ImportGraph = { files: new Set(), external: new Map(), unfollowable: [] };
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.pop() as string;
    const relative = path.relative(ROOT, file);
    if (graph.files.has(relative)) continue;
    graph.files.add(relative);
    const { specifiers, nonLiteralDynamicImports } = specifiersOf(readFileSync(file, "utf8"));
    if (nonLiteralDynamicImports > 0) graph.unfollowable.push(relative);
    for (const specifier of specifiers) {
      if (specifier.startsWith(".")) {
        queue.push(resolveRelative(file, specifier));
      } else {
        const importers = graph.external.get(specifier) ?? new Set<string>();
        importers.add(relative);
        graph.external.set(specifier, importers);
      }
    }
  }
  return graph;
}

/** Core files (other than its index) that a file outside the core imports directly. */
function coreImportsBypassingIndex(file: string, source: string): string[] {
  return specifiersOf(source)
    .specifiers.filter((specifier) => specifier.startsWith("."))
    .map((specifier) => resolveRelative(file, specifier))
    .filter((target) => target.startsWith(RUNTIME_DIR + path.sep) && target !== CORE_INDEX)
    .map((target) => path.relative(ROOT, target));
}

describe("the parser", () => {
  it("finds every form of import and re-export", () => {
    const source = `
      /** import { nope } from "in-a-comment"; */
      // import "also-a-comment";
      import { a,
        b } from "./multi-line.js";
      import type { T } from "types-only";
      import * as ns from 'single-quoted';
      import def, { c } from "default-and-named";
      import "side-effect";
      export { d } from "./re-export.js";
      export * from "star-export";
      export type { E } from "type-export";
      const lazy = await import("dynamic");
      const computed = await import(name);
    `;
    const { specifiers, nonLiteralDynamicImports } = specifiersOf(source);
    expect(specifiers.sort()).toEqual(
      [
        "./multi-line.js",
        "types-only",
        "single-quoted",
        "default-and-named",
        "side-effect",
        "./re-export.js",
        "star-export",
        "type-export",
        "dynamic",
      ].sort(),
    );
    expect(nonLiteralDynamicImports).toBe(1);
  });
});

describe("the core's import graph", () => {
  const graph = importGraph(listTs(RUNTIME_DIR));

  it("was really walked (all runtime files, generated code, the libraries the core uses)", () => {
    expect([...graph.files].filter((f) => f.startsWith(`src${path.sep}runtime${path.sep}`)).length).toBe(listTs(RUNTIME_DIR).length);
    expect([...graph.files].some((f) => f.startsWith(`gen${path.sep}`))).toBe(true);
    expect(graph.external.has("@bufbuild/protobuf")).toBe(true);
    expect(graph.external.has("@connectrpc/connect")).toBe(true);
  });

  it("holds no network server, HTTP stack, file system, connect-node or openai, nor their subpaths", () => {
    const offending = [...graph.external].filter(([specifier]) => isForbidden(specifier));
    expect(offending.map(([specifier, importers]) => `${specifier} <- ${[...importers].join(", ")}`)).toEqual([]);
  });

  it("reaches nothing under src/server, src/store, src/engine or src/cli", () => {
    const reached = [...graph.files].filter((file) => FORBIDDEN_DIRS.some((dir) => path.join(ROOT, file).startsWith(dir)));
    expect(reached).toEqual([]);
  });

  it("has no dynamic import the walk cannot follow", () => {
    expect(graph.unfollowable).toEqual([]);
  });
});

describe("the rules themselves", () => {
  it("catch subpath imports of forbidden modules, not look-alikes", () => {
    expect(["openai/resources", "@connectrpc/connect-node/dist/x", "node:fs/promises", "fs", "node:http2"].every(isForbidden)).toBe(true);
    expect(["@connectrpc/connect", "openai-compat", "node:path", "fsevents"].some(isForbidden)).toBe(false);
  });

  it("catch an edge importing a core file other than the index", () => {
    const edgeFile = path.join(ROOT, "src", "engine", "example.ts");
    const source = `import { RunSink } from "../runtime/execution-backend.js";\nimport { createRuntime } from "../runtime/index.js";`;
    expect(coreImportsBypassingIndex(edgeFile, source)).toEqual([path.join("src", "runtime", "execution-backend.ts")]);
  });
});

describe("the edges", () => {
  const edgeFiles = EDGE_DIRS.filter((dir) => existsSync(dir)).flatMap(listTs);

  it("were really found", () => {
    for (const dir of ["server", "store", "engine", "cli"]) {
      expect(edgeFiles.some((file) => file.startsWith(path.join(ROOT, "src", dir) + path.sep))).toBe(true);
    }
  });

  it("import the core only through src/runtime/index.ts", () => {
    const bypassing = edgeFiles.flatMap((file) =>
      coreImportsBypassingIndex(file, readFileSync(file, "utf8")).map((target) => `${path.relative(ROOT, file)} -> ${target}`),
    );
    expect(bypassing).toEqual([]);
  });
});
