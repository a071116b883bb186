import { X509Certificate } from "node:crypto";
import { invalidField } from "./backend-errors.js";

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/**
 * Refuses (INVALID_ARGUMENT naming `field`) a CA bundle that is not one or
 * more PEM certificates, or one given for an http:// url, where it would be
 * silently unused. A private key pasted for a CA would otherwise be held
 * and sent nowhere, and every connection would fail as "untrusted" with no
 * word of why. Messages never quote the bundle.
 */
export function checkCaBundle(field: string, pem: string, url: string): void {
  const problem = caBundleProblem(pem, url);
  if (problem !== undefined) throw invalidField(field, problem);
}

/**
 * What is wrong with a CA bundle for `url` (see {@link checkCaBundle}), as
 * words to follow the name of the field or file that holds it; undefined
 * when nothing is. AddRuntime and `backend.json`'s caFile share it, so an
 * operator gets the same answer whichever way a runtime is registered.
 */
export function caBundleProblem(pem: string, url: string): string | undefined {
  if (new URL(url).protocol !== "https:") return "is only used with an https:// url; remove it, or use https://";
  const blocks = [...pem.matchAll(PEM_BLOCK)];
  if (blocks.length === 0) return "must be PEM certificates (-----BEGIN CERTIFICATE-----)";
  for (const [block, label] of blocks) {
    if (label?.includes("PRIVATE KEY")) return "holds a private key; give the CA's certificate, never a key";
    if (label !== "CERTIFICATE") return `must be PEM certificates only, not ${label}`;
    try {
      new X509Certificate(block);
    } catch {
      return "holds a certificate that cannot be read";
    }
  }
  return undefined;
}
