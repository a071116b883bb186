import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliProcess, startCli } from "../../support/cli-process.js";
import { selfSignedCertificate } from "../../support/self-signed.js";
import { jsonLines, runClient, serveRuntime, type ServedRuntime } from "./client-support.js";

/**
 * Every way the CLI can fail to talk to a server below the RPC layer, with
 * real servers: nothing listening, an HTTP/1.1 port, https:// to a plain
 * port, http:// to a TLS port, a certificate the client does not trust, and
 * a server that wants a token. Each is one line naming the server URL and
 * what to do, and exits as the exit-code table says (3 unreachable, 4
 * unauthenticated), over gRPC and the Connect protocol alike.
 */

let dir: string;
let plain: ServedRuntime;
let guarded: ServedRuntime;
let secure: CliProcess;
/** "host:port" of the TLS server's main port and of its browser port. */
let secureMain: string;
let secureBrowser: string;
let plainHttp1: string;
let http1Server: CliProcess | undefined;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "wr-cli-transport-"));
  const { cert, key } = await selfSignedCertificate(dir);
  writeFileSync(path.join(dir, "cert.pem"), cert);
  writeFileSync(path.join(dir, "key.pem"), key);
  const tlsFlags = ["--tls-cert", path.join(dir, "cert.pem"), "--tls-key", path.join(dir, "key.pem")];
  secure = startCli(["serve", "--host", "127.0.0.1", "--port", "0", "--http1-port", "0", "--runtime-id", "rt-tls", ...tlsFlags]);
  const http1 = startCli(["serve", "--host", "127.0.0.1", "--port", "0", "--http1-port", "0", "--runtime-id", "rt-plain-h1"]);
  [plain, guarded] = await Promise.all([serveRuntime({ runtimeId: "rt-plain" }), serveRuntime({ runtimeId: "rt-token", token: "s3cret" })]);
  const [secureListening, http1Listening] = await Promise.all([secure.listening, http1.listening]);
  secureMain = secureListening.h2c;
  secureBrowser = secureListening.http1 ?? "";
  plainHttp1 = http1Listening.http1 ?? "";
  http1Server = http1;
}, 120_000);

afterAll(async () => {
  for (const cli of [secure, http1Server]) {
    cli?.child.kill("SIGTERM");
    await cli?.exited;
  }
  await Promise.all([plain?.close(), guarded?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

const PROTOCOLS = ["grpc", "connect"] as const;

/** Runs `workers list` against `server` over each protocol; expects the same one line and exit code from both. */
async function expectEachProtocol(server: string, line: string | RegExp, code: number, env: Record<string, string> = {}): Promise<void> {
  for (const protocol of PROTOCOLS) {
    const result = await runClient(["workers", "list", "--protocol", protocol], { server, env });
    if (typeof line === "string") expect(result.stderr, protocol).toBe(`worker-runtime: ${line}\n`);
    else expect(result.stderr, protocol).toMatch(line);
    expect(result, protocol).toMatchObject({ code, stdout: "" });
  }
}

describe("a server the CLI cannot talk to", () => {
  it("nothing listening: connection refused, and where to point --server", async () => {
    await expectEachProtocol(
      "http://127.0.0.1:1",
      "cannot reach http://127.0.0.1:1: nothing is listening there (connection refused); start the server, or point --server (or $WORKER_RUNTIME_SERVER) at the port it listens on (reason: Unavailable)",
      3,
    );
  });

  it("an HTTP/1.1 port (a server's --http1-port, the console's): not HTTP/2, and which port to use instead", async () => {
    const url = `http://${plainHttp1}`;
    await expectEachProtocol(
      url,
      `${url} did not answer over HTTP/2: it is an HTTP/1.1 port (a server's --http1-port, or the console's); point --server at the server's gRPC port (serve --port, default 7070; backend --port, or npm start --grpc-port, default 7080) (reason: Unavailable)`,
      3,
    );
  });

  it("https:// to a plain port: says it does not speak TLS and gives the http:// URL", async () => {
    const port = new URL(plain.url).port;
    await expectEachProtocol(
      `https://127.0.0.1:${port}`,
      `https://127.0.0.1:${port} does not speak TLS; use http://127.0.0.1:${port} (reason: Unavailable)`,
      3,
    );
  });

  it("http:// to a TLS port (main or browser port): says it speaks TLS and gives the https:// URL", async () => {
    for (const address of [secureMain, secureBrowser]) {
      await expectEachProtocol(`http://${address}`, `http://${address} speaks TLS; use https://${address} (reason: Unavailable)`, 3);
    }
  });

  it("a certificate the client does not trust: says so, and how to trust it", async () => {
    const url = `https://${secureMain}`;
    await expectEachProtocol(
      url,
      `${url} has a TLS certificate this client does not trust (self-signed certificate); trust its CA with NODE_EXTRA_CA_CERTS=PATH.pem, or fix the server's certificate (reason: Unavailable)`,
      3,
    );
    // Trusted, the same URL works: the sentence named the way out.
    const trusted = await runClient(["workers", "list"], { server: url, env: { NODE_EXTRA_CA_CERTS: path.join(dir, "cert.pem") } });
    expect(trusted).toMatchObject({ code: 0, stderr: "" });
  });

  it("--output json: the same sentence with code Unavailable, and the same exit code", async () => {
    const result = await runClient(["workers", "list", "--output", "json"], { server: `http://${plainHttp1}` });
    expect(result.code).toBe(3);
    const [line] = jsonLines(result.stderr);
    expect(line).toEqual({
      error: { code: "Unavailable", reason: "", message: expect.stringContaining(`http://${plainHttp1} did not answer over HTTP/2`) },
    });
  });
});

describe("a server that wants a token", () => {
  it("none given: names the server and both ways to give one, exit 4", async () => {
    await expectEachProtocol(
      guarded.url,
      `${guarded.url} wants a bearer token: put it in a file and pass --token-file PATH, or set $WORKER_RUNTIME_TOKEN (reason: UNAUTHENTICATED)`,
      4,
    );
  });

  it("a wrong one: names where the token came from, exit 4; JSON keeps the server's reason and message", async () => {
    const file = path.join(dir, "wrong.token");
    writeFileSync(file, "not-the-token\n");
    const fromFile = await runClient(["workers", "list", "--token-file", file], { server: guarded.url });
    expect(fromFile).toMatchObject({
      code: 4,
      stderr: `worker-runtime: ${guarded.url} refused the token from --token-file ${file}: check that it is the token the server was started with (reason: UNAUTHENTICATED)\n`,
    });
    await expectEachProtocol(
      guarded.url,
      `${guarded.url} refused the token from $WORKER_RUNTIME_TOKEN: check that it is the token the server was started with (reason: UNAUTHENTICATED)`,
      4,
      { WORKER_RUNTIME_TOKEN: "nope" },
    );
    const json = await runClient(["workers", "list", "--output", "json"], { server: guarded.url, env: { WORKER_RUNTIME_TOKEN: "nope" } });
    expect(json.code).toBe(4);
    expect(jsonLines(json.stderr)).toEqual([
      { error: { code: "Unauthenticated", reason: "UNAUTHENTICATED", message: expect.any(String) } },
    ]);
  });
});

describe("the listening line under TLS", () => {
  it("labels the browser port as the HTTPS port it is, not http1=", () => {
    expect(secure.stdout()).toContain(`worker-runtime listening https=${secureMain} https-browser=${secureBrowser} runtime_id=rt-tls\n`);
  });

  it("the serving log line uses the listening line's words (https, https-browser)", async () => {
    const serving = async (): Promise<Record<string, unknown> | undefined> => {
      for (let tries = 0; tries < 100; tries++) {
        const line = secure
          .stderr()
          .split("\n")
          .find((text) => text.includes('"message":"serving"'));
        if (line !== undefined) return JSON.parse(line) as Record<string, unknown>;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return undefined;
    };
    const line = await serving();
    expect(line).toMatchObject({ https: secureMain, "https-browser": secureBrowser });
    expect(line).not.toHaveProperty("http1");
  });
});
