import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCli } from "../support/cli-process.js";
import { selfSignedCertificate } from "../support/self-signed.js";

/**
 * `backend --config`: a runtime's caFile is checked as AddRuntime checks
 * ca_certificate_pem. A private key given for a CA (or anything but PEM
 * certificates, or a CA for an http:// runtime) used to be held and sent
 * nowhere, every connection to that runtime then failing as "untrusted"
 * with no word of why; now the Backend refuses to start (exit 2), naming
 * the entry, and the key's text never reaches its output.
 */
const dir = mkdtempSync(join(tmpdir(), "backend-ca-file-"));
let key = "";

beforeAll(async () => {
  key = (await selfSignedCertificate(dir)).key.toString("utf8");
  writeFileSync(
    join(dir, "backend.json"),
    JSON.stringify({ runtimes: [{ id: "rt-tls", url: "https://127.0.0.1:7443", caFile: "key.pem" }] }),
  );
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("backend --config with a private key as a runtime's caFile", () => {
  it("refuses to start, naming the entry, without quoting the key", async () => {
    const cli = startCli(["backend", "--port", "0", "--config", join(dir, "backend.json")]);
    // One that starts serving (the defect) would never exit: stop waiting after a while and fail.
    let timer: NodeJS.Timeout | undefined;
    const running = new Promise<{ code: null }>((resolve) => {
      timer = setTimeout(() => resolve({ code: null }), 20_000);
    });
    try {
      expect((await Promise.race([cli.exited, running])).code).toBe(2);
      expect(cli.stderr()).toContain("--config runtimes[0].caFile holds a private key; give the CA's certificate, never a key");
      const keyLine = key.split("\n")[1] ?? "";
      expect(keyLine.length).toBeGreaterThan(20);
      expect(cli.stderr() + cli.stdout()).not.toContain(keyLine);
      expect(cli.stdout()).not.toContain("listening");
    } finally {
      clearTimeout(timer);
      cli.kill();
      await cli.exited;
    }
  });
});
