import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * No ambient async context anywhere in src/: on Node 20 and 22, any
 * AsyncLocalStorage in use installs promise hooks that run for every
 * promise the process creates, which cost ~9 % of the runtime's CPU per
 * relayed chunk (issue 9's `capacity` bench) and about a tenth of a traced
 * runtime's unary throughput (`overhead`). The RPC log fields and trace
 * contexts are passed explicitly instead (src/server/log-context.ts,
 * src/telemetry/tracing/rpc-trace-context.ts), and tracing registers no
 * context manager.
 */
const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** node:async_hooks holds AsyncLocalStorage and the hooks it is built on (createHook, AsyncResource). */
const FORBIDDEN_MODULES = new Set(["async_hooks", "node:async_hooks"]);
const FORBIDDEN_NAMES = new Set(["AsyncLocalStorage", "AsyncResource", "createHook"]);

/** What in `source` imports node:async_hooks or names its context APIs (comments do not count). */
function asyncContextUses(fileName: string, source: string): string[] {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true);
  const uses: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteralLike(node) && FORBIDDEN_MODULES.has(node.text)) uses.push(`imports ${node.text}`);
    if (ts.isIdentifier(node) && FORBIDDEN_NAMES.has(node.text)) uses.push(`uses ${node.text}`);
    ts.forEachChild(node, visit);
  };
  visit(file);
  return uses;
}

function sourcesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((name) => name.endsWith(".ts"))
    .map((name) => path.join(dir, name));
}

describe("no AsyncLocalStorage in src/", () => {
  it("finds an import of node:async_hooks and a use of AsyncLocalStorage, not a mention in a comment", () => {
    expect(asyncContextUses("a.ts", 'import { AsyncLocalStorage } from "node:async_hooks";')).toEqual([
      "uses AsyncLocalStorage",
      "imports node:async_hooks",
    ]);
    expect(asyncContextUses("b.ts", 'const hooks = await import("async_hooks");\nnew hooks.AsyncResource("x");')).toEqual([
      "imports async_hooks",
      "uses AsyncResource",
    ]);
    expect(asyncContextUses("c.ts", "/** Not an AsyncLocalStorage: see node:async_hooks. */\nexport const x = 1;")).toEqual([]);
  });

  it("is used nowhere in src/", () => {
    const offenders = sourcesUnder(path.join(ROOT, "src")).flatMap((file) =>
      asyncContextUses(file, readFileSync(file, "utf8")).map((use) => `${path.relative(ROOT, file)} ${use}`),
    );
    expect(offenders).toEqual([]);
  });
});
