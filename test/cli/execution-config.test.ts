import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { backendFromFlags, ExecutionConfigError, workspaceRootsFromFlags } from "../../src/cli/execution-config.js";

describe("serve execution flags", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "cli-exec-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("parses repeated --workspace-root with and without names", async () => {
    await mkdir(join(dir, "code"));
    await mkdir(join(dir, "notes"));
    expect(workspaceRootsFromFlags([join(dir, "code"), `docs=${join(dir, "notes")}`])).toEqual({
      code: join(dir, "code"),
      docs: join(dir, "notes"),
    });
    expect(() => workspaceRootsFromFlags([join(dir, "missing")])).toThrow(ExecutionConfigError);
    expect(() => workspaceRootsFromFlags([join(dir, "code"), `code=${join(dir, "notes")}`])).toThrow(/used twice/);
  });

  it("builds the backend from OPENAI_* with flags taking precedence, and loads --profiles", async () => {
    const file = join(dir, "profiles.json");
    await writeFile(file, JSON.stringify({ profiles: [{ name: "reviewer", tools: ["read_file"] }] }));
    const none = await backendFromFlags({}, {});
    expect(none.availability()).toMatchObject({ available: false });
    const keyed = await backendFromFlags({ "openai-model": "m-flag", profiles: file }, { OPENAI_API_KEY: "sk-env", OPENAI_MODEL: "m-env" });
    expect(keyed.availability()).toEqual({ available: true });
    expect(keyed.profiles().map((p) => [p.name, p.model])).toEqual([
      ["companion", "m-flag"],
      ["reviewer", "m-flag"],
    ]);
    const local = await backendFromFlags({ "openai-keyless": true, "openai-base-url": "http://127.0.0.1:11434/v1" }, {});
    expect(local.availability()).toEqual({ available: true });
    await expect(backendFromFlags({ profiles: join(dir, "nope.json") }, {})).rejects.toThrow(/cannot read --profiles: ENOENT/);
  });
});
