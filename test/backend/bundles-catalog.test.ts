import { create, toJson } from "@bufbuild/protobuf";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigBundleSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { recordingLogger } from "../support/recording-logger.js";
import { BackendConfigError, BundleDir, loadBundleDir } from "../../src/backend/index.js";
import { MAX_BUNDLE_FILE_BYTES } from "../../src/backend/bundle-file.js";
import { bundleDigest, MAX_BUNDLE_BYTES } from "../../src/runtime/index.js";

describe("loadBundleDir", () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  const bundle = (bundleId: string) => create(ConfigBundleSchema, { bundleId, profiles: [{ name: "p", model: "m" }] });
  const write = (name: string, value: unknown) =>
    writeFile(join(dir ?? "", name), typeof value === "string" ? value : JSON.stringify(value));

  it("computes a missing digest, keeps a matching one and ignores other files", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundle-dir-"));
    const b = bundle("b");
    b.digest = bundleDigest(b);
    await write("a.json", toJson(ConfigBundleSchema, bundle("a")));
    await write("b.json", toJson(ConfigBundleSchema, b));
    await write("notes.txt", "not a bundle");
    const catalog = loadBundleDir(dir);
    expect([...catalog.keys()]).toEqual(["a", "b"]);
    expect(catalog.get("a")?.digest).toBe(bundleDigest(bundle("a")));
    expect(catalog.get("b")?.digest).toBe(b.digest);
  });

  it.each([
    ["bad.json", "{", /bad\.json: not valid JSON/],
    ["bad.json", { bundleId: "x", nope: 1 }, /bad\.json is not a ConfigBundle/],
    ["bad.json", { profiles: [] }, /bad\.json has no bundleId/],
    ["bad.json", { bundleId: "x", digest: `sha256:${"0".repeat(64)}` }, /bad\.json: digest .* does not match/],
    // The rules PutConfigBundle applies, so a bad file stops start-up instead of failing CreateWorker later.
    ["bad.json", { bundleId: "bad id/..", profiles: [{ name: "p" }] }, /bad\.json: bundle\.bundle_id: must be 1-64 characters/],
    ["bad.json", { bundleId: "x", profiles: [] }, /bad\.json: bundle\.profiles: must hold at least one profile/],
    ["bad.json", { bundleId: "x", profiles: [{ name: "p" }, { name: "p" }] }, /bad\.json: bundle\.profiles\[1\]\.name: "p" appears twice/],
    ["bad.json", { bundleId: "x", profiles: [{ name: "p", maxTurns: 99999 }] }, /bad\.json: bundle\.profiles\[0\]\.max_turns: is 99999/],
    [
      "bad.json",
      { bundleId: "x", profiles: [{ name: "p" }], policies: { allowedCapabilities: ["fs.teleport"] } },
      /bad\.json: bundle\.policies\.allowed_capabilities\[0\]: unknown capability "fs\.teleport"/,
    ],
    [
      "bad.json",
      { bundleId: "x", profiles: [{ name: "p", secretNames: ["bad-name"] }] },
      /bad\.json: bundle\.profiles\[0\]\.secret_names\[0\]: must be a secret name/,
    ],
  ])("refuses %s holding %j", async (name, content, message) => {
    dir = await mkdtemp(join(tmpdir(), "bundle-dir-"));
    await write(name, content);
    expect(() => loadBundleDir(dir ?? "")).toThrow(message);
    expect(() => loadBundleDir(dir ?? "")).toThrow(BackendConfigError);
  });

  it("refuses one bundle id in two files, and a missing directory", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundle-dir-"));
    await write("one.json", toJson(ConfigBundleSchema, bundle("same")));
    await write("two.json", toJson(ConfigBundleSchema, bundle("same")));
    expect(() => loadBundleDir(dir ?? "")).toThrow(/two\.json: bundle id "same" is also in one\.json/);
    // Ids that differ only in case: a runtime refuses the second (its files would merge on a case-insensitive disk).
    await rm(join(dir, "two.json"));
    await write("upper.json", toJson(ConfigBundleSchema, bundle("SAME")));
    expect(() => loadBundleDir(dir ?? "")).toThrow(/upper\.json: bundle id "SAME" differs only in case from "same" in one\.json/);
    expect(() => loadBundleDir(join(dir ?? "", "missing"))).toThrow(/cannot read --bundles-dir: ENOENT/);
  });

  it("refuses a file over the file bound by its size, before reading it, naming the file and the bound", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundle-dir-"));
    expect(MAX_BUNDLE_FILE_BYTES).toBe(4 * MAX_BUNDLE_BYTES);
    // A small bundle padded with whitespace past the bound: its content alone would pass.
    const padded = `${JSON.stringify(toJson(ConfigBundleSchema, bundle("padded")))}${" ".repeat(MAX_BUNDLE_FILE_BYTES)}`;
    await write("padded.json", padded);
    const size = Buffer.byteLength(padded);
    expect(() => loadBundleDir(dir ?? "")).toThrow(
      `--bundles-dir file padded.json is ${size} bytes; at most ${MAX_BUNDLE_FILE_BYTES} allowed`,
    );
    await rm(join(dir, "padded.json"));
    // Sparse: 3 GiB that read whole would take gigabytes of memory (or fail on Node's own size limit).
    await write("huge.json", "");
    await truncate(join(dir, "huge.json"), 3 * 1024 ** 3);
    expect(() => loadBundleDir(dir ?? "")).toThrow(
      `--bundles-dir file huge.json is ${3 * 1024 ** 3} bytes; at most ${MAX_BUNDLE_FILE_BYTES} allowed`,
    );
  });

  it("refuses a FIFO named *.json as not a regular file, without waiting for a writer", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundle-dir-"));
    execFileSync("mkfifo", [join(dir, "pipe.json")]);
    expect(() => loadBundleDir(dir ?? "")).toThrow("--bundles-dir file pipe.json is not a regular file");
  });

  it("reads a file exactly at the file bound", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundle-dir-"));
    const json = JSON.stringify(toJson(ConfigBundleSchema, bundle("edge")));
    await write("edge.json", `${json}${" ".repeat(MAX_BUNDLE_FILE_BYTES - Buffer.byteLength(json))}`);
    expect([...loadBundleDir(dir).keys()]).toEqual(["edge"]);
  });
});

describe("BundleDir", () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it("re-reads: adds new and edited files as versions beside the old, skips a bad file and logs it once", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundle-dir-"));
    const at = dir;
    const one = create(ConfigBundleSchema, { bundleId: "one", profiles: [{ name: "p", model: "m" }] });
    await writeFile(join(at, "one.json"), JSON.stringify(toJson(ConfigBundleSchema, one)));
    const logger = recordingLogger();
    const held = new BundleDir({ initial: loadBundleDir(at), dir: at, logger, minIntervalMs: 0 });
    const edited = create(ConfigBundleSchema, { bundleId: "one", profiles: [{ name: "p", model: "other" }] });
    await writeFile(join(at, "one.json"), JSON.stringify(toJson(ConfigBundleSchema, edited)));
    await writeFile(join(at, "bad.json"), JSON.stringify({ bundleId: "bad", profiles: [{ name: "p", maxTurns: 99999 }] }));
    await held.refresh();
    expect(held.find("one", bundleDigest(one))?.profiles[0]?.model).toBe("m");
    expect(held.find("one", bundleDigest(edited))?.profiles[0]?.model).toBe("other");
    expect(held.hasId("bad")).toBe(false);
    await held.refresh();
    const skipped = logger.lines.filter((line) => line.message.startsWith("bad --bundles-dir file"));
    expect(skipped).toHaveLength(1);
    expect(skipped[0]?.fields).toMatchObject({ file: "bad.json" });
    expect(String(skipped[0]?.fields["problem"])).toContain("max_turns: is 99999");
    expect(held.size).toBe(2);
  });

  it("re-reads: skips a file over the file bound by its size, logged once, and adds the others", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundle-dir-"));
    const at = dir;
    const logger = recordingLogger();
    const held = new BundleDir({ initial: loadBundleDir(at), dir: at, logger, minIntervalMs: 0 });
    await writeFile(join(at, "huge.json"), "");
    await truncate(join(at, "huge.json"), 3 * 1024 ** 3);
    const late = create(ConfigBundleSchema, { bundleId: "late", profiles: [{ name: "p", model: "m" }] });
    await writeFile(join(at, "late.json"), JSON.stringify(toJson(ConfigBundleSchema, late)));
    await held.refresh();
    await held.refresh();
    expect(held.find("late", bundleDigest(late))).toBeDefined();
    const skipped = logger.lines.filter((line) => line.message.startsWith("bad --bundles-dir file"));
    expect(skipped).toHaveLength(1);
    expect(skipped[0]?.fields).toMatchObject({ file: "huge.json" });
    expect(String(skipped[0]?.fields["problem"])).toContain(`is ${3 * 1024 ** 3} bytes; at most ${MAX_BUNDLE_FILE_BYTES} allowed`);
  });

  it("never re-reads without a directory", async () => {
    const held = new BundleDir({ initial: new Map() });
    await held.refresh();
    expect(held.size).toBe(0);
  });
});
