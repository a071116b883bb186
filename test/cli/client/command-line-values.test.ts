import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fifoAt, HUGE_FILE_BYTES, sparseFileAt } from "../../support/unreadable-files.js";
import { runClient } from "./client-support.js";

/**
 * Bad values in flags and variables: refused with one clear line and exit 2
 * before anything is sent, and never echoed when they are credentials.
 */

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "wr-cli-values-"));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Nothing listens there: a value that got past the checks would fail with exit 3 instead. */
const NOWHERE = "http://127.0.0.1:1";

describe("credentials in bad values are refused, not echoed", () => {
  it("a token with a line break or control character, from --token-file or the variable", async () => {
    const file = path.join(dir, "two-lines.token");
    writeFileSync(file, "s3cret-first-line\ns3cret-second-line\n");
    const fromFile = await runClient(["workers", "list", "--token-file", file], { server: NOWHERE });
    expect(fromFile.stderr).toBe(
      `worker-runtime: the token in --token-file ${file} has characters an HTTP header cannot carry (a line break, a control or a non-ASCII character)\n`,
    );
    expect(fromFile.code).toBe(2);
    const fromEnv = await runClient(["workers", "list"], { server: NOWHERE, env: { WORKER_RUNTIME_TOKEN: "s3cret\u0001token" } });
    expect(fromEnv.stderr).toBe(
      "worker-runtime: the token in $WORKER_RUNTIME_TOKEN has characters an HTTP header cannot carry (a line break, a control or a non-ASCII character)\n",
    );
    expect(fromEnv.code).toBe(2);
    for (const result of [fromFile, fromEnv]) expect(result.stderr).not.toContain("s3cret");
  });

  it("an empty --token-file", async () => {
    const file = path.join(dir, "empty.token");
    writeFileSync(file, "\n");
    const result = await runClient(["workers", "list", "--token-file", file], { server: NOWHERE });
    expect(result).toMatchObject({ code: 2, stderr: `worker-runtime: --token-file ${file} is empty\n` });
  });

  it("a --token-file that is a FIFO or past 64 KiB: refused at once, not waited on or read whole", async () => {
    const fifo = fifoAt(path.join(dir, "pipe.token"));
    const fromFifo = await runClient(["workers", "list", "--token-file", fifo], { server: NOWHERE });
    expect(fromFifo).toMatchObject({ code: 2, stderr: `worker-runtime: --token-file ${fifo} is not a regular file\n` });
    const huge = sparseFileAt(path.join(dir, "huge.token"), HUGE_FILE_BYTES);
    const fromHuge = await runClient(["workers", "list", "--token-file", huge], { server: NOWHERE });
    expect(fromHuge).toMatchObject({
      code: 2,
      stderr: `worker-runtime: --token-file ${huge} is ${HUGE_FILE_BYTES} bytes; at most 65536 allowed\n`,
    });
  });

  it("a server URL with user info, which the client would not send", async () => {
    const result = await runClient(["workers", "list", "--server", "http://admin:s3cret@127.0.0.1:1"]);
    expect(result.stderr).toBe(
      "worker-runtime: --server must not carry user info: put the token in --token-file or $WORKER_RUNTIME_TOKEN\n",
    );
    expect(result.code).toBe(2);
    const fromEnv = await runClient(["workers", "list"], { server: "http://admin:s3cret@127.0.0.1:1" });
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr).not.toContain("s3cret");
  });
});

describe("a --server that is not an HTTP/2 server", () => {
  it("an HTTP/1.1 port, or https:// to a plain port: exit 3 and a sentence saying what to do", async () => {
    // Like the console's port under npm start: HTTP/1.1 only.
    const http1 = createServer((_request, response) => response.end("console\n"));
    await new Promise<void>((resolve) => http1.listen(0, "127.0.0.1", resolve));
    const { port } = http1.address() as AddressInfo;
    try {
      const plain = await runClient(["workers", "list"], { server: `http://127.0.0.1:${port}` });
      expect(plain.stderr).toBe(
        `worker-runtime: http://127.0.0.1:${port} did not answer over HTTP/2: it is an HTTP/1.1 port (a server's --http1-port, or the console's); point --server at the server's gRPC port (serve --port, default 7070; backend --port, or npm start --grpc-port, default 7080) (reason: Unavailable)\n`,
      );
      expect(plain.code).toBe(3);
      const tls = await runClient(["workers", "list"], { server: `https://127.0.0.1:${port}` });
      expect(tls.stderr).toBe(
        `worker-runtime: https://127.0.0.1:${port} does not speak TLS; use http://127.0.0.1:${port} (reason: Unavailable)\n`,
      );
      expect(tls.code).toBe(3);
    } finally {
      http1.closeAllConnections();
      await new Promise((resolve) => http1.close(resolve));
    }
  });
});

describe("numbers", () => {
  it("transcript --after past a uint64 and --tail past a safe integer are usage errors, not an internal failure", async () => {
    const after = await runClient(["transcript", "w-1", "--after", "18446744073709551616"], { server: NOWHERE });
    expect(after).toMatchObject({
      code: 2,
      stderr: 'worker-runtime: --after wants a whole number up to 18446744073709551615, not "18446744073709551616"\n',
    });
    const tail = await runClient(["transcript", "w-1", "--tail", "99999999999999999999"], { server: NOWHERE });
    expect(tail).toMatchObject({
      code: 2,
      stderr: 'worker-runtime: --tail wants a whole number up to 9007199254740991, not "99999999999999999999"\n',
    });
  });
});

describe("a group without its subcommand", () => {
  it("is a bad command line, as no command is: the group's usage on stderr, exit 2; --help prints it on stdout, exit 0", async () => {
    for (const group of ["workers", "runtimes", "runtime"]) {
      const none = await runClient([group], { server: NOWHERE });
      expect(none.code, group).toBe(2);
      expect(none.stdout, group).toBe("");
      expect(none.stderr, group).toMatch(new RegExp(`^worker-runtime: no ${group} command given\\nusage: worker-runtime ${group} <`));
      const asked = await runClient([group, "--help"], { server: NOWHERE });
      expect(asked.code, group).toBe(0);
      expect(asked.stderr, group).toBe("");
      expect(asked.stdout, group).toMatch(new RegExp(`^usage: worker-runtime ${group} <`));
    }
    // Six CLI processes, each starting Node from source: past the default timeout on a loaded machine.
  }, 180_000);
});

describe("workers create", () => {
  it("a --capability without --workspace: exit 2 naming --workspace, before any call", async () => {
    const result = await runClient(["workers", "create", "--profile", "companion", "--capability", "fs.read"], { server: NOWHERE });
    expect(result).toMatchObject({
      code: 2,
      stdout: "",
      stderr: expect.stringMatching(/^worker-runtime: --capability fs\.read needs --workspace: a worker's tools work in its workspace\n/),
    });
  });

  it("a --mount without --workspace: exit 2 naming both flags, before any call", async () => {
    const result = await runClient(["workers", "create", "--profile", "companion", "--mount", "ws:shared/docs:docs"], { server: NOWHERE });
    expect(result).toMatchObject({
      code: 2,
      stdout: "",
      stderr: expect.stringMatching(
        /^worker-runtime: --mount ws:shared\/docs:docs needs --workspace: the tools that use a mount run in the worker's workspace\n/,
      ),
    });
  });
});

describe("--output json", () => {
  it("reports command-line mistakes as one JSON line on stderr too, with exit 2", async () => {
    const mistakes = [
      ["workers", "list", "--status", "sleeping", "--output", "json"],
      ["send", "--output=json"],
      ["workers", "list", "--output", "json", "--no-such-flag"],
      ["workers", "list", "--output", "json", "--server", "ftp://127.0.0.1:1"],
      ["workers", "frobnicate", "--output", "json"],
      // Found before any command parses its options: the command word, and what comes before it.
      ["frobnicate", "--output", "json"],
      ["--output", "json", "--bogus", "workers", "list"],
      ["--output=json", "frobnicate"],
    ];
    for (const args of mistakes) {
      const result = await runClient(args, { server: NOWHERE });
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stdout).toBe("");
      const lines = result.stderr.trimEnd().split("\n");
      expect(lines, args.join(" ")).toHaveLength(1);
      expect(JSON.parse(lines[0] ?? "")).toMatchObject({ error: { code: "InvalidArgument", reason: "", message: expect.any(String) } });
    }
  });
});
