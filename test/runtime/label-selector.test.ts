import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { WorkerSchema, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { expectError } from "../support/errors.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { PROTOCOLS } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A label selector (ListWorkers) may name any value a stored worker can
 * have. CreateWorker refuses control and bidi characters in label values
 * (identifying-text.test.ts), but a worker stored before that rule keeps
 * its labels, and refusing such a selector left it impossible to select.
 * The selector stays bounded: its count, its keys' shape, its values' size.
 * The runtime (served on its own) and the Backend fanning ListWorkers out
 * to it agree.
 */

const RUNTIME_ID = "rt-selector";
const OLD_LABELS = { team: "a\u202Eb", note: "x\u001b[31m\ty" };

let served: BackendWithRemote;
let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), "wr-label-selector-"));
  const store = createFileStore({ dataDir });
  await store.open({ runtimeId: RUNTIME_ID, generateRuntimeId: () => RUNTIME_ID });
  for (const [workerId, labels] of [
    ["w-old", OLD_LABELS],
    ["w-plain", { team: "ab" }],
  ] as const) {
    const worker = create(WorkerSchema, {
      ref: { runtimeId: RUNTIME_ID, workerId },
      status: WorkerStatus.IDLE,
      profile: { source: { case: "builtin", value: "companion" } },
      createdAt: timestampNow(),
      updatedAt: timestampNow(),
      labels,
    });
    await store.putWorker({ worker, createRequestId: "", createFingerprint: "" });
  }
  await store.close();
  const remote = await createRuntime({ logger: silentLogger, runtimeId: RUNTIME_ID, store: createFileStore({ dataDir }) });
  const embedded = await createRuntime({ logger: silentLogger, runtimeId: "rt-embedded", executionBackend: new ScriptedBackend() });
  served = await startBackendWithRemote({ embedded, remote });
});

afterAll(async () => {
  await served?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe.each(PROTOCOLS)("a label selector over %s", (protocol) => {
  it("selects a stored worker whose label values hold control or bidi characters, on the runtime and through the Backend", async () => {
    const direct = served.remoteClients(protocol);
    const viaBackend = served.clients(protocol);
    const listings = [
      (labelSelector: Record<string, string>) => direct.catalog.listWorkers({ runtimeId: RUNTIME_ID, labelSelector }),
      (labelSelector: Record<string, string>) => viaBackend.catalog.listWorkers({ labelSelector }),
    ];
    for (const [i, list] of listings.entries()) {
      const selectors: Record<string, string>[] = [{ team: OLD_LABELS.team }, { note: OLD_LABELS.note }, OLD_LABELS];
      for (const labelSelector of selectors) {
        const { workers } = await list(labelSelector);
        expect(
          workers.map((w) => w.ref?.workerId),
          `${i === 0 ? "runtime" : "Backend"} ${JSON.stringify(labelSelector)}`,
        ).toEqual(["w-old"]);
      }
      expect((await list({ team: "ab" })).workers.map((w) => w.ref?.workerId)).toEqual(["w-plain"]);
    }
  });

  it("is still bounded: a value over its size, a malformed key, refused naming the field", async () => {
    const clients = served.remoteClients(protocol);
    const long = await expectError(() =>
      clients.catalog.listWorkers({ runtimeId: RUNTIME_ID, labelSelector: { team: "\u202E".repeat(100) } }),
    );
    expect([long.error.code, long.detail?.reason, long.detail?.metadata["field"]]).toEqual([
      Code.InvalidArgument,
      ErrorReason.LIMIT_EXCEEDED,
      "label_selector[team]",
    ]);
    const key = await expectError(() => clients.catalog.listWorkers({ runtimeId: RUNTIME_ID, labelSelector: { "Bad\u202EKey": "x" } }));
    expect([key.error.code, key.detail?.reason]).toEqual([Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT]);
    // CreateWorker still refuses such a value: the selector names what is stored, it lets no new one in.
    const create = await expectError(() => clients.catalog.createWorker({ runtimeId: RUNTIME_ID, labels: { team: OLD_LABELS.team } }));
    expect(create.detail?.metadata["field"]).toBe("labels[team]");
  });
});
