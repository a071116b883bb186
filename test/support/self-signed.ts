import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";

/**
 * A one-day self-signed certificate for localhost and 127.0.0.1, made with
 * openssl into `dir` (cert.pem, key.pem), for tests that serve TLS.
 */
export async function selfSignedCertificate(dir: string): Promise<{ cert: Buffer; key: Buffer }> {
  const keyFile = path.join(dir, "key.pem");
  const certFile = path.join(dir, "cert.pem");
  const subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"];
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", ...subject, "-keyout", keyFile, "-out", certFile],
    {
      stdio: "ignore",
    },
  );
  return { cert: await readFile(certFile), key: await readFile(keyFile) };
}
