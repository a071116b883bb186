import { create } from "@bufbuild/protobuf";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConfigBundle } from "../../../gen/worker_runtime/v1/profile_pb.js";
import { WorkerSchema, WorkerStatus } from "../../../gen/worker_runtime/v1/worker_pb.js";
import { createFileStore } from "../../../src/store/fs/index.js";
import { bundleOf } from "../../support/bundles.js";
import { runClient, serveRuntime, type ServedRuntime } from "./client-support.js";

/**
 * `send` to workers whose config bundle the runtime cannot serve: the
 * client says in its own words which bundle, why (its stored copy damaged,
 * breaking a rule added since, or not on the runtime at all) and what to
 * do, as it does for the other typed reasons; JSON keeps the server's
 * reason and message for scripts.
 */

const RUNTIME_ID = "rt-client";
let dataDir: string;
let rt: ServedRuntime;

const damaged = bundleOf({ bundleId: "dmg", profiles: [{ name: "helper", model: "m" }] });
const missing = bundleOf({ bundleId: "gone", profiles: [{ name: "helper", model: "m" }] });
// As an older version left it: max_turns over today's bound.
const invalid = bundleOf({ bundleId: "old", profiles: [{ name: "helper", model: "m", maxTurns: 5000 }] });

function workerOn(bundle: ConfigBundle, workerId: string) {
  return create(WorkerSchema, {
    ref: { runtimeId: RUNTIME_ID, workerId },
    status: WorkerStatus.IDLE,
    profile: { source: { case: "bundle", value: { bundleId: bundle.bundleId, digest: bundle.digest, profile: "helper" } } },
  });
}

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), "wr-cli-bundle-"));
  const store = createFileStore({ dataDir });
  await store.open({ runtimeId: RUNTIME_ID, generateRuntimeId: () => RUNTIME_ID });
  for (const [bundle, workerId] of [
    [damaged, "w-dmg"],
    [missing, "w-gone"],
    [invalid, "w-old"],
  ] as const) {
    await store.putConfigBundle(bundle);
    await store.putWorker({ worker: workerOn(bundle, workerId), createRequestId: "", createFingerprint: "" });
  }
  await store.close();
  const file = path.join(dataDir, "bundles", "dmg.bundle");
  const bytes = readFileSync(file);
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
  writeFileSync(file, bytes);
  rmSync(path.join(dataDir, "bundles", "gone.bundle"));
  rt = await serveRuntime({ dataDir, runtimeId: RUNTIME_ID });
}, 60_000);

afterAll(async () => {
  await rt?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe("send to a worker whose config bundle cannot be served", () => {
  it("says which bundle, why and what to do, exit 8; JSON keeps the typed reason", async () => {
    const cases: [string, string][] = [
      [
        "w-dmg",
        `config bundle "dmg" (digest ${damaged.digest}) cannot be used: the runtime's stored copy is damaged; ` +
          "push the same bundle again (a Backend pushes a bundle of its --bundles-dir when a worker is next created on it)",
      ],
      [
        "w-old",
        `config bundle "old" (digest ${invalid.digest}) cannot be used: it breaks a rule added since it was stored ` +
          "(`worker-runtime runtime diagnostics` names it); push a corrected bundle under a new id and create new workers on it",
      ],
      [
        "w-gone",
        `config bundle "gone" (digest ${missing.digest}) is not on the runtime; push it again, ` +
          "or check that the Backend's --bundles-dir holds it",
      ],
    ];
    for (const [worker, sentence] of cases) {
      const text = await runClient(["send", worker, "hi"], { server: rt.url });
      expect(text, worker).toMatchObject({ code: 8, stdout: "", stderr: `worker-runtime: ${sentence} (reason: BUNDLE_UNAVAILABLE)\n` });
    }
    const json = await runClient(["send", "w-dmg", "hi", "--output", "json"], { server: rt.url });
    expect(json.code).toBe(8);
    expect(JSON.parse(json.stderr)).toMatchObject({ error: { code: "FailedPrecondition", reason: "BUNDLE_UNAVAILABLE" } });
    expect(rt.fake.requests).toHaveLength(0);
  }, 120_000);
});
