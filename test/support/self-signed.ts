import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";

/**
 * A one-day self-signed certificate for localhost and 127.0.0.1 (or the
 * names given as a subjectAltName value), made with openssl into `dir`
 * (cert.pem, key.pem), for tests that serve TLS.
 */
export async function selfSignedCertificate(dir: string, altNames = "IP:127.0.0.1,DNS:localhost"): Promise<{ cert: Buffer; key: Buffer }> {
  const keyFile = path.join(dir, "key.pem");
  const certFile = path.join(dir, "cert.pem");
  const subject = ["-subj", "/CN=localhost", "-addext", `subjectAltName=${altNames}`];
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", ...subject, "-keyout", keyFile, "-out", certFile],
    {
      stdio: "ignore",
    },
  );
  return { cert: await readFile(certFile), key: await readFile(keyFile) };
}

/** A self-signed certificate for localhost whose validity ended a day ago, into `dir` (expired-cert.pem, expired-key.pem). */
export async function expiredCertificate(dir: string): Promise<{ certFile: string; keyFile: string }> {
  const keyFile = path.join(dir, "expired-key.pem");
  const certFile = path.join(dir, "expired-cert.pem");
  const request = path.join(dir, "expired.csr");
  execFileSync("openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", keyFile, "-out", request], {
    stdio: "ignore",
  });
  // A negative -days puts notAfter before notBefore (now): expired from the start.
  execFileSync("openssl", ["x509", "-req", "-in", request, "-signkey", keyFile, "-days", "-1", "-out", certFile], { stdio: "ignore" });
  return { certFile, keyFile };
}
