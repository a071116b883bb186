import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackendConfigError, backendConfigTokenFiles, loadBackendConfig } from "../../src/backend/index.js";
import { selfSignedCertificate } from "../support/self-signed.js";
import { fifoAt, HUGE_FILE_BYTES, sparseFileAt } from "../support/unreadable-files.js";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wr-backend-config-"));
  await writeFile(join(dir, "a.token"), "token-a\n");
  // cert.pem and key.pem: a real certificate, and the private key an operator may give by mistake.
  await selfSignedCertificate(dir);
  await writeFile(join(dir, "garbage.pem"), "-----BEGIN CERTIFICATE-----\n");
  await writeFile(join(dir, "bad-cert.pem"), "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n");
  await writeFile(join(dir, "csr.pem"), "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE REQUEST-----\n");
  fifoAt(join(dir, "pipe"));
  sparseFileAt(join(dir, "huge"), HUGE_FILE_BYTES);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function config(value: unknown): Promise<string> {
  const file = join(dir, `backend-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, typeof value === "string" ? value : JSON.stringify(value));
  return file;
}

describe("loadBackendConfig", () => {
  it("reads runtimes with token files relative to the config, token variables and CA files", async () => {
    const file = await config({
      runtimes: [
        { id: "rt-a", url: "https://127.0.0.1:7070", tokenFile: "a.token", caFile: "cert.pem" },
        { id: "rt-b", url: "https://b.example:7443", tokenEnv: "RT_B" },
        { id: "rt-c", url: "http://127.0.0.1:7072" },
      ],
    });
    const [a, b, c] = loadBackendConfig(file, { RT_B: " token-b " });
    expect(a?.token?.()).toBe("token-a");
    expect(String(a?.ca)).toContain("BEGIN CERTIFICATE");
    expect(b?.token?.()).toBe("token-b");
    expect(c?.token).toBeUndefined();
    // The token file is read again before each connection attempt: a rotated token is picked up.
    await writeFile(join(dir, "a.token"), "token-a2");
    expect(a?.token?.()).toBe("token-a2");
  });

  it("names the entry and field at fault, never a token", async () => {
    const cases: [unknown, string][] = [
      ["{not json", "not valid JSON"],
      [{ runtime: [] }, '{"runtimes": [...]}'],
      [{ runtimes: [{ id: "bad id", url: "http://x" }] }, "runtimes[0].id"],
      [{ runtimes: [{ id: "a", url: "ftp://x" }] }, "runtimes[0].url"],
      [
        {
          runtimes: [
            { id: "a", url: "http://x" },
            { id: "a", url: "http://y" },
          ],
        },
        'runtimes[1].id "a" is used twice',
      ],
      [{ runtimes: [{ id: "a", url: "http://x", tokenFile: "missing.token" }] }, "cannot read --config runtimes[0].tokenFile: ENOENT"],
      [{ runtimes: [{ id: "a", url: "http://x", tokenEnv: "UNSET_VAR" }] }, "UNSET_VAR is not set"],
      [{ runtimes: [{ id: "a", url: "http://x", tokenFile: "a.token", tokenEnv: "X" }] }, "exclude each other"],
    ];
    for (const [value, message] of cases) {
      const file = await config(value);
      expect(() => loadBackendConfig(file, {}), message).toThrow(BackendConfigError);
      expect(() => loadBackendConfig(file, {}), message).toThrow(message);
    }
  });

  it("refuses a CA file that is not PEM certificates, or is given for an http:// url, as AddRuntime refuses ca_certificate_pem", async () => {
    const entry = (caFile: string, url = "https://rt.example:7443") => ({
      runtimes: [
        { id: "ok", url: "http://x" },
        { id: "a", url, caFile },
      ],
    });
    const cases: [object, string][] = [
      [entry("key.pem"), "--config runtimes[1].caFile holds a private key; give the CA's certificate, never a key"],
      [entry("garbage.pem"), "--config runtimes[1].caFile must be PEM certificates (-----BEGIN CERTIFICATE-----)"],
      [entry("a.token"), "--config runtimes[1].caFile must be PEM certificates (-----BEGIN CERTIFICATE-----)"],
      [entry("bad-cert.pem"), "--config runtimes[1].caFile holds a certificate that cannot be read"],
      [entry("csr.pem"), "--config runtimes[1].caFile must be PEM certificates only, not CERTIFICATE REQUEST"],
      // Unused over plain HTTP/2: refused rather than held and silently ignored.
      [
        entry("cert.pem", "http://127.0.0.1:7070"),
        "--config runtimes[1].caFile is only used with an https:// url; remove it, or use https://",
      ],
    ];
    for (const [value, message] of cases) {
      const file = await config(value);
      expect(() => loadBackendConfig(file, {}), message).toThrow(BackendConfigError);
      expect(() => loadBackendConfig(file, {}), message).toThrow(message);
    }
  });

  it("refuses a config, token or CA file that is a FIFO or past its bound, naming the entry, the file and why", async () => {
    const pipe = join(dir, "pipe");
    const huge = join(dir, "huge");
    const entry = (extra: object) => ({ runtimes: [{ id: "a", url: "http://x", ...extra }] });
    const cases: [string, string][] = [
      [pipe, `--config ${pipe} is not a regular file`],
      [huge, `--config ${huge} is ${HUGE_FILE_BYTES} bytes; at most 1048576 allowed`],
      [await config(entry({ tokenFile: "pipe" })), `--config runtimes[0].tokenFile ${pipe} is not a regular file`],
      [
        await config(entry({ tokenFile: "huge" })),
        `--config runtimes[0].tokenFile ${huge} is ${HUGE_FILE_BYTES} bytes; at most 65536 allowed`,
      ],
      [await config(entry({ caFile: "pipe" })), `--config runtimes[0].caFile ${pipe} is not a regular file`],
      [await config(entry({ caFile: "huge" })), `--config runtimes[0].caFile ${huge} is ${HUGE_FILE_BYTES} bytes; at most 1048576 allowed`],
    ];
    for (const [file, message] of cases) {
      expect(() => loadBackendConfig(file, {}), message).toThrow(BackendConfigError);
      expect(() => loadBackendConfig(file, {}), message).toThrow(message);
    }
    // What sandboxed commands are kept from: nothing to name in a file that is refused (loadBackendConfig says why).
    expect(backendConfigTokenFiles(pipe)).toEqual([]);
    expect(backendConfigTokenFiles(huge)).toEqual([]);
  });

  it("reads a token file exactly at its bound", async () => {
    await writeFile(join(dir, "edge.token"), "t".repeat(65536));
    const [edge] = loadBackendConfig(await config({ runtimes: [{ id: "a", url: "http://x", tokenFile: "edge.token" }] }), {});
    expect(edge?.token?.()).toHaveLength(65536);
  });
});
