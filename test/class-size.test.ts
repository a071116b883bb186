import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * A class doing many things is the first sign of a module to split, so no
 * class in src/ or the console's web/src/ may grow past this many methods
 * (constructor, accessors and private methods included).
 */
const MAX_METHODS = 20;
const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** Every hand-written source: the core, the stores, the engine, the server, the Backend, the CLI, the console's page. */
const CHECKED = ["src", "web/src"];

function sourcesUnder(rel: string): string[] {
  const abs = path.join(ROOT, rel);
  if (abs.endsWith(".ts")) return [abs];
  return readdirSync(abs, { recursive: true, encoding: "utf8" })
    .filter((name) => name.endsWith(".ts"))
    .map((name) => path.join(abs, name));
}

/** Every class of a file with the number of its methods. */
function classSizes(file: string): Array<{ name: string; methods: number }> {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const sizes: Array<{ name: string; methods: number }> = [];
  const visit = (node: ts.Node): void => {
    if (ts.isClassLike(node)) {
      const methods = node.members.filter((m) => ts.isMethodDeclaration(m) || ts.isAccessor(m) || ts.isConstructorDeclaration(m)).length;
      sizes.push({ name: `${path.relative(ROOT, file)}: ${node.name?.text ?? "(anonymous)"}`, methods });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return sizes;
}

describe("class size", () => {
  it(`keeps every class in src/ and web/src/ at ${MAX_METHODS} methods or fewer`, () => {
    const classes = CHECKED.flatMap(sourcesUnder).flatMap(classSizes);
    expect(classes.length).toBeGreaterThan(5);
    expect(classes.filter((c) => c.methods > MAX_METHODS)).toEqual([]);
  });
});
