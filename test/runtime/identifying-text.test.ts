import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { expectError } from "../support/errors.js";
import { type Harness, PROTOCOLS, startHarness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A worker's display_name, intent and label values identify it in lists,
 * logs and terminals, so they hold no control characters (intent, a
 * description, may hold tabs and line breaks) and no bidirectional
 * override or isolate controls, which make a name read as another
 * (U+202E turns "exe.txt" around). Refused with INVALID_ARGUMENT naming the
 * field; a real server, both protocols.
 */

let harness: Harness;
let runtimeId: string;

beforeAll(async () => {
  harness = await startHarness({ executionBackend: new ScriptedBackend() });
  runtimeId = harness.runtime.runtimeId;
});

afterAll(async () => {
  await harness?.close();
});

const HOSTILE = ["a\u202Eb", "a\u202Ab", "a\u2066b", "a\u2069b", "a\u0000b", "a\u001b[31mb", "a\u007fb", "a\u0085b", "a\rb"];

describe.each(PROTOCOLS)("identifying text over %s", (protocol) => {
  it("refuses control and bidi override characters in display_name, intent and label values, naming the field", async () => {
    const clients = harness.connect(protocol);
    const fields: [string, (text: string) => Record<string, unknown>][] = [
      ["display_name", (text) => ({ displayName: text })],
      ["intent", (text) => ({ intent: text })],
      ["labels[team]", (text) => ({ labels: { team: text } })],
    ];
    for (const [field, init] of fields) {
      for (const text of [...HOSTILE, ...(field === "intent" ? [] : ["a\tb", "a\nb"])]) {
        const { error, detail } = await expectError(() => clients.catalog.createWorker({ runtimeId, ...init(text) }));
        expect([error.code, detail?.reason, detail?.metadata["field"]], `${field} ${JSON.stringify(text)}`).toEqual([
          Code.InvalidArgument,
          ErrorReason.INVALID_ARGUMENT,
          field,
        ]);
      }
    }
    // A label selector may still name such a value: a worker stored before this rule can hold it (label-selector.test.ts).
    // Text as people write it is kept: any script, emoji, marks that are not controls, and an intent's lines.
    const { worker } = await clients.catalog.createWorker({
      runtimeId,
      displayName: "Coder ünï 语言 \u200Fعربي 👩‍💻",
      intent: "first line\n\tsecond, indented",
      labels: { team: "ünï-语言" },
    });
    expect(worker?.intent).toBe("first line\n\tsecond, indented");
  });
});
