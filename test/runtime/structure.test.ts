import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * The core stays easy to see and to change: the facade and the session
 * stay small, and no class grows into a god object again (issue 8).
 */

const RUNTIME_DIR = fileURLToPath(new URL("../../src/runtime/", import.meta.url));
const MAX_LINES = 300;
const MAX_METHODS = 20;

function runtimeFiles(): string[] {
  return readdirSync(RUNTIME_DIR)
    .filter((name) => name.endsWith(".ts"))
    .map((name) => path.join(RUNTIME_DIR, name));
}

/** Every class in a file with its number of methods and accessors. */
function classesOf(file: string): { name: string; methods: number }[] {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const found: { name: string; methods: number }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isClassDeclaration(node) || ts.isClassExpression(node)) {
      const methods = node.members.filter((m) => ts.isMethodDeclaration(m) || ts.isGetAccessor(m) || ts.isSetAccessor(m)).length;
      found.push({ name: `${path.basename(file)}:${node.name?.text ?? "(anonymous)"}`, methods });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe("the core's shape", () => {
  it.each(["runtime.ts", "worker-session.ts"])("keeps %s under 300 lines", (name) => {
    const lines = readFileSync(path.join(RUNTIME_DIR, name), "utf8").split("\n").length;
    expect(lines).toBeLessThan(MAX_LINES);
  });

  it("has no class with more than 20 methods", () => {
    const classes = runtimeFiles().flatMap(classesOf);
    expect(classes.some((c) => c.name.startsWith("worker-session.ts:"))).toBe(true);
    expect(classes.filter((c) => c.methods > MAX_METHODS)).toEqual([]);
  });
});
