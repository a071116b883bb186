import { createPrivateKey, X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";
import { UsageError } from "./usage-error.js";

/** A certificate (chain) and its private key, as read from `--tls-cert` and `--tls-key`. */
export interface TlsPair {
  cert: Buffer;
  key: Buffer;
}

/**
 * Refuses, naming the flag and file, a TLS pair the server could not serve
 * with: OpenSSL's own errors ("error:05800074:x509 certificate routines::key
 * values mismatch") name neither, and were left to the listener, past the
 * usage check. An expired certificate is refused too: every client would
 * reject it, so starting would be an outage that looks healthy.
 */
export function checkTlsPair(pair: TlsPair, certFile: string, keyFile: string, now = new Date()): void {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pair.cert);
  } catch (error) {
    throw new UsageError(`--tls-cert ${certFile} is not a PEM certificate (${openSslReason(error)})`);
  }
  try {
    createPrivateKey(pair.key);
  } catch (error) {
    throw new UsageError(`--tls-key ${keyFile} is not a PEM private key (${openSslReason(error)})`);
  }
  try {
    createSecureContext(pair);
  } catch (error) {
    throw new UsageError(`--tls-key ${keyFile} does not go with --tls-cert ${certFile} (${openSslReason(error)})`);
  }
  const expires = new Date(certificate.validTo);
  if (expires.getTime() <= now.getTime()) {
    throw new UsageError(`--tls-cert ${certFile} expired on ${expires.toISOString()}`);
  }
}

/** OpenSSL's reason without its code prefix: "key values mismatch", "no start line". */
function openSslReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/^error:[0-9A-F]+:[^:]*::?/i, "");
}
