import { Code } from "@connectrpc/connect";
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError } from "./errors.js";

/** A list request's filter fields, in a fixed order (everything but page_size and page_token). */
export type PageFilter = readonly unknown[];

/** Longest token accepted; real ones are well under it. */
const MAX_TOKEN_LENGTH = 512;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Page tokens are opaque and tamper-evident (AIP-158): the position, the
 * list and a digest of the request's filters are sealed with AES-256-GCM
 * under a key of this runtime and store. A client can neither read nor
 * forge one; an altered token, one from another runtime or store, one from
 * another list, or one reused with other filters is INVALID_ARGUMENT +
 * PAGE_TOKEN_INVALID. page_size may change between pages.
 */
export class PageTokens {
  private readonly key: Buffer;

  /** `secret` must be unguessable; tokens verify only under the same secret. */
  constructor(secret: string) {
    this.key = createHash("sha256").update(`page-token\0${secret}`).digest();
  }

  /** Seals the position after which the next page of `list` starts. */
  encode(list: string, filter: PageFilter, position: string | number): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    const plain = Buffer.from(JSON.stringify([list, filterDigest(filter), position]), "utf8");
    const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return sealed.toString("base64url");
  }

  /** Opens a token of `list` issued for `filter`; "" returns undefined (first page). */
  decode(field: string, list: string, filter: PageFilter, token: string): string | number | undefined {
    if (token === "") return undefined;
    const parsed = this.open(field, token);
    if (!Array.isArray(parsed) || parsed.length !== 3) throw invalidToken(field, "is not a valid page token");
    const [tokenList, digest, position]: unknown[] = parsed;
    if (tokenList !== list) throw invalidToken(field, "was issued for another list");
    if (digest !== filterDigest(filter)) {
      throw invalidToken(field, "was issued for a request with other filters; change only page_size between pages");
    }
    if (typeof position === "string" || (typeof position === "number" && Number.isSafeInteger(position))) return position;
    throw invalidToken(field, "is not a valid page token");
  }

  /** The sealed JSON, or a typed error when the token was not sealed by this key. */
  private open(field: string, token: string): unknown {
    const sealed = token.length <= MAX_TOKEN_LENGTH && /^[A-Za-z0-9_-]+$/.test(token) ? Buffer.from(token, "base64url") : undefined;
    if (sealed && sealed.length > IV_BYTES + TAG_BYTES) {
      try {
        const decipher = createDecipheriv("aes-256-gcm", this.key, sealed.subarray(0, IV_BYTES));
        decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
        const plain = Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
        return JSON.parse(plain.toString("utf8"));
      } catch {
        // Altered, truncated or sealed under another key: the typed error below.
      }
    }
    throw invalidToken(field, "is not a valid page token (altered, or issued by another runtime or store)");
  }
}

function invalidToken(fieldName: string, why: string): RuntimeError {
  return new RuntimeError(Code.InvalidArgument, ErrorReason.PAGE_TOKEN_INVALID, `${fieldName}: ${why}; list again without a page token`, {
    field: fieldName,
  });
}

function filterDigest(filter: PageFilter): string {
  return createHash("sha256").update(JSON.stringify(filter)).digest("base64url").slice(0, 16);
}
