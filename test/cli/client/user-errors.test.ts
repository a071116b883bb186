import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "../../support/openai-chunks.js";
import { runClient, serveRuntime, type ServedRuntime } from "./client-support.js";

/**
 * Errors as a user of the client meets them. A server error about a value
 * the user typed names what they typed (the flag, or the argument), not the
 * request field it filled: the user never wrote `after_cursor`, they wrote
 * `--from`; the server still decides what is valid, so the client and the
 * runtime cannot disagree about the rules. Errors the client finds itself
 * read and exit like the server's, and text over the runtime's input limit
 * is refused before it is sent.
 */

let rt: ServedRuntime;
let worker: string;

beforeAll(async () => {
  rt = await serveRuntime();
  const created = await runClient(["workers", "create", "--profile", "companion"], { server: rt.url });
  worker = created.stdout.trim();
});

afterAll(async () => {
  await rt?.close();
});

const cli = (...args: string[]) => runClient(args, { server: rt.url });
/** Two mounts, the second named against the rules (upper case). */
const badMount = ["workers", "create", "--profile", "companion", "--workspace", "ws/x", "--mount", "ws:a:good", "--mount", "ws:b:Bad"];

describe("server errors name the flag the user typed", () => {
  it("every flag that fills a request field", async () => {
    const cases: [string[], string][] = [
      [["watch", worker, "--from", "garbage"], "--from: is not a cursor (reason: INVALID_ARGUMENT)"],
      [["workers", "create", "--profile", "companion", "--label", "Bad=x"], '--label "Bad": key must be'],
      [["workers", "list", "--label", "Bad=x"], '--label "Bad": key must be'],
      [["workers", "create", "--profile", "companion", "--capability", "fly"], '--capability: unknown capability "fly"'],
      [["workers", "create", "--profile", "companion", "--workspace", "nowhere/x"], '--workspace root "nowhere" is not an allowed root'],
      [["workers", "create", "--profile", "companion", "--request-id", "a b"], "--request-id: must be 1-128 printable ASCII"],
      [["workers", "create", "--profile", "companion", "--name", "n".repeat(300)], "--name: is 300 bytes"],
      [badMount, "--mount #2 name: must be 1-63 characters"],
      [["send", worker, "hi", "--request-id", "a b"], "--request-id: must be 1-128 printable ASCII"],
      [["approve", worker, "call-1", "--run", "r-missing"], '--run "r-missing" not found (reason: NOT_FOUND)'],
      [["reject", worker, "call-1", "--run", "r-1", "--reason", "r".repeat(2000)], "--reason: is 2000 bytes"],
      [["workers", "get", worker, "--runtime", "rt-other"], '--runtime "rt-other" is not a runtime of this server'],
      [["runtime", "diagnostics", "--worker", "bad id"], "--worker: must be 1-64 characters"],
      [["cancel", worker, "r-missing"], 'run "r-missing" not found (reason: NOT_FOUND)'],
      [["workers", "get", "bad id"], "worker: must be 1-64 characters"],
      [
        ["workers", "delete", worker],
        `worker ${worker} is not stopped: stop it first (workers stop) or delete it with --force (reason: WORKER_NOT_STOPPED)`,
      ],
      [["runtime", "diagnostics", "--severity", "bogus"], '--severity must be info, warning or error, not "bogus"'],
    ];
    for (const [args, sentence] of cases) {
      const result = await cli(...args);
      expect(result.stderr, args.join(" ")).toContain(`worker-runtime: ${sentence}`);
      expect(result.stderr, args.join(" ")).not.toMatch(
        /after_cursor|labels?_?(selector)?\[|capabilities\[|mounts\[|workspace\.root|request_id|display_name|run_id|runtime_id|worker_id|set force/,
      );
    }
    // Eighteen CLI processes in a row, each starting Node from source: on a loaded CI machine over 60 s.
  }, 240_000);

  it("with --output json the message names the flag too", async () => {
    const result = await cli("watch", worker, "--from", "garbage", "--output", "json");
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stderr)).toEqual({
      error: { code: "InvalidArgument", reason: "INVALID_ARGUMENT", message: "--from: is not a cursor" },
    });
  });
});

describe("a value the server refuses is a usage error (exit 2), as one the client refuses is", () => {
  it("INVALID_ARGUMENT about a flag or an argument the user typed exits 2, naming it, with the server's reason text", async () => {
    const cases: [string[], string][] = [
      [["watch", worker, "--from", "garbage"], "--from: is not a cursor (reason: INVALID_ARGUMENT)"],
      [["send", worker, "hi", "--request-id", "a b"], "--request-id: must be 1-128 printable ASCII"],
      [["runtime", "diagnostics", "--worker", "bad id"], "--worker: must be 1-64 characters of [A-Za-z0-9._-] (reason: INVALID_ARGUMENT)"],
      [["workers", "get", "bad id"], "worker: must be 1-64 characters of [A-Za-z0-9._-] (reason: INVALID_ARGUMENT)"],
      // A part of one of several repeated flags: which one, and which part.
      [badMount, "--mount #2 name: must be 1-63 characters"],
    ];
    for (const [args, sentence] of cases) {
      const result = await cli(...args);
      expect(result.stderr, args.join(" ")).toContain(`worker-runtime: ${sentence}`);
      expect(result.code, args.join(" ")).toBe(2);
    }
    // The client's own refusal of a value exits the same way.
    expect((await cli("transcript", worker, "--tail", "x")).code).toBe(2);
  }, 120_000);

  it("a refusal for another reason still exits 8: the worker's state", async () => {
    const created = await cli("workers", "create", "--profile", "companion");
    const stopped = created.stdout.trim();
    expect((await cli("workers", "stop", stopped)).code).toBe(0);
    const result = await cli("send", stopped, "hi", "--request-id", "fine-id");
    expect(result).toMatchObject({ code: 8, stderr: `worker-runtime: worker ${stopped} is stopped (reason: WORKER_STOPPED)\n` });
  });
});

describe("an unknown --runtime reads the same whichever command met it", () => {
  it("one sentence naming the runtimes the server has, NOT_FOUND, exit 5", async () => {
    const sentence = `worker-runtime: --runtime "nope" is not a runtime of this server (it has ${rt.runtimeId}) (reason: NOT_FOUND)\n`;
    for (const args of [
      ["runtime", "info"],
      ["workers", "get", worker],
      ["send", worker, "hi"],
      ["transcript", worker],
    ]) {
      const result = await cli(...args, "--runtime", "nope");
      expect(result, args.join(" ")).toMatchObject({ code: 5, stdout: "", stderr: sentence });
    }
  }, 120_000);
});

describe("errors read and exit alike, whoever finds them", () => {
  it("send to a stopped worker: WORKER_STOPPED, exit 8, in text and JSON", async () => {
    const created = await cli("workers", "create", "--profile", "companion");
    const stopped = created.stdout.trim();
    expect((await cli("workers", "stop", stopped)).code).toBe(0);
    const text = await cli("send", stopped, "hi");
    expect(text).toMatchObject({ code: 8, stdout: "", stderr: `worker-runtime: worker ${stopped} is stopped (reason: WORKER_STOPPED)\n` });
    const json = await cli("send", stopped, "hi", "--output", "json");
    expect(json.code).toBe(8);
    expect(JSON.parse(json.stderr)).toMatchObject({ error: { code: "FailedPrecondition", reason: "WORKER_STOPPED" } });
  });

  it("runtime info with a --runtime the server does not have: NOT_FOUND naming the runtimes it has, exit 5", async () => {
    const result = await cli("runtime", "info", "--runtime", "rt-other");
    expect(result).toMatchObject({
      code: 5,
      stdout: "",
      stderr: `worker-runtime: --runtime "rt-other" is not a runtime of this server (it has ${rt.runtimeId}) (reason: NOT_FOUND)\n`,
    });
  });

  it("send with empty text is a usage error, as empty stdin is", async () => {
    const result = await cli("send", worker, "");
    expect(result).toMatchObject({ code: 2, stdout: "", stderr: "worker-runtime: the text is empty: nothing to send\n" });
  });

  it("cancel, approve and reject on a worker with no run in flight: NOT_FOUND, exit 5, as the README's table says", async () => {
    for (const args of [
      ["cancel", worker],
      ["approve", worker, "call-1"],
      ["reject", worker, "call-1"],
    ]) {
      const text = await cli(...args);
      expect(text, args.join(" ")).toMatchObject({
        code: 5,
        stdout: "",
        stderr: `worker-runtime: worker ${worker} has no run in flight (reason: NOT_FOUND)\n`,
      });
      const json = await cli(...args, "--output", "json");
      expect(json.code).toBe(5);
      expect(JSON.parse(json.stderr)).toEqual({
        error: { code: "NotFound", reason: "NOT_FOUND", message: `worker ${worker} has no run in flight` },
      });
    }
    // Six CLI processes in a row: 35 s on this machine while a CI run shared it.
  }, 180_000);
});

describe("text over the runtime's input limit", () => {
  // The runtime's default max_input_bytes.
  const LIMIT = 262_144;

  it("send from stdin: refused before sending, naming the limit, however long the text (even past the message size)", async () => {
    const before = rt.fake.requests.length;
    for (const size of [LIMIT + 1, 6 * 1024 * 1024]) {
      const result = await runClient(["send", worker], { server: rt.url, input: "a".repeat(size) });
      expect(result, String(size)).toMatchObject({
        code: 8,
        stdout: "",
        stderr: `worker-runtime: the text is more than ${LIMIT} bytes; at most ${LIMIT} allowed (the runtime's max_input_bytes) (reason: LIMIT_EXCEEDED)\n`,
      });
    }
    // Nothing reached the model.
    expect(rt.fake.requests.length).toBe(before);
  });

  it("text at the limit is sent", async () => {
    rt.fake.enqueue(reply({ text: "ok" }));
    const result = await runClient(["send", worker], { server: rt.url, input: "a".repeat(LIMIT) });
    expect(result).toMatchObject({ code: 0, stdout: "ok\n" });
  });

  it("chat: a line over the limit is refused and the loop goes on", async () => {
    rt.fake.enqueue(reply({ text: "fine" }));
    const result = await runClient(["chat", worker], { server: rt.url, input: `${"b".repeat(6 * 1024 * 1024)}\nhello\n` });
    expect(result.stderr).toBe(
      `worker-runtime: the line is more than ${LIMIT} bytes; at most ${LIMIT} allowed (the runtime's max_input_bytes) (reason: LIMIT_EXCEEDED)\n`,
    );
    expect(result).toMatchObject({ code: 0, stdout: "fine\n" });
  });
});
