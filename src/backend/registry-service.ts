import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import {
  AddRuntimeResponseSchema,
  GetRegisteredRuntimeResponseSchema,
  ListRuntimesResponseSchema,
  RegisteredRuntimeSchema,
  RemoveRuntimeResponseSchema,
  type RegisteredRuntime,
  type RuntimeRegistry,
  UpdateRuntimeResponseSchema,
} from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { backendError, fieldTooLarge, invalidField, invalidPageToken } from "./backend-errors.js";
import { isHeaderSafeToken } from "../server/index.js";
import { endpointOf, type RemoteEndpoint, routeKeyOf } from "./remote-transport.js";
import { checkCaBundle } from "./ca-bundle.js";
import type { RuntimeConnection } from "./runtime-connection.js";
import type { RuntimeDirectory } from "./runtime-directory.js";
import { checkRoutedRuntimeId } from "./request-checks.js";
import { unknownRuntime } from "./upstream-errors.js";

/** Longest AddRuntime url, bearer token and CA bundle, in UTF-8 bytes. */
const MAX_URL_BYTES = 2048;
const MAX_TOKEN_BYTES = 4096;
const MAX_CA_BYTES = 64 * 1024;
const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 500;

/** What the registry service needs from the Backend. */
export interface RegistryContext {
  directory: RuntimeDirectory;
  /** Registers and starts connecting to a remote Runtime. */
  addRemote(runtimeId: string, endpoint: RemoteEndpoint): RuntimeConnection;
  /** Re-points a registered remote Runtime (undefined when none has that id). */
  repointRemote(runtimeId: string, endpoint: RemoteEndpoint): RuntimeConnection | undefined;
  /** Deadline of each Runtime's summary fetch. */
  fanoutTimeoutMs: number;
  /** Most runtimes registered at once (BackendOptions.maxRuntimes). */
  maxRuntimes: number;
}

/**
 * A connection as the registry shows it. Credentials and addresses never
 * leave the Backend: browsers read this API, and a runtime's address is
 * not theirs to see (the operator's backend.json holds it).
 */
export function registeredRuntime(connection: RuntimeConnection): RegisteredRuntime {
  const state = connection.snapshot;
  return create(RegisteredRuntimeSchema, {
    runtimeId: connection.runtimeId,
    embedded: connection.embedded,
    health: state.health,
    healthMessage: state.healthMessage,
    healthChangedAt: timestampFromDate(state.healthChangedAt),
    failedAttempts: state.failedAttempts,
    ...(state.nextAttemptAt ? { nextAttemptAt: timestampFromDate(state.nextAttemptAt) } : {}),
    ...(state.summary ? { summary: state.summary } : {}),
    ...(state.summaryTime ? { summaryTime: timestampFromDate(state.summaryTime) } : {}),
    hasCredentials: connection.hasCredentials,
  });
}

/**
 * The Backend's own RuntimeRegistry service. Runtimes added here live as
 * long as the Backend process (the config file is the persistent list).
 */
export function createRegistryService(context: RegistryContext): ServiceImpl<typeof RuntimeRegistry> {
  const { directory } = context;
  const find = (runtimeId: string): RuntimeConnection => {
    const connection = directory.get(checkRoutedRuntimeId("runtime_id", runtimeId));
    if (!connection) throw unknownRuntime(runtimeId, directory.ids());
    return connection;
  };
  return {
    async listRuntimes(request, ctx) {
      if (request.pageSize < 0) throw invalidField("page_size", "must not be negative");
      const size = request.pageSize === 0 ? DEFAULT_PAGE_SIZE : Math.min(request.pageSize, MAX_PAGE_SIZE);
      const after = decodeAfter(request.pageToken);
      const rest = directory.sorted().filter((c) => after === undefined || c.runtimeId > after);
      const page = rest.slice(0, size);
      await Promise.all(page.map((c) => c.refreshSummary(context.fanoutTimeoutMs, ctx.signal, ctx.values)));
      const last = page.at(-1);
      return create(ListRuntimesResponseSchema, {
        runtimes: page.map(registeredRuntime),
        nextPageToken:
          rest.length > size && last ? Buffer.from(JSON.stringify(["backend.runtimes", last.runtimeId])).toString("base64url") : "",
      });
    },
    async getRegisteredRuntime(request, ctx) {
      const connection = find(request.runtimeId);
      await connection.refreshSummary(context.fanoutTimeoutMs, ctx.signal, ctx.values);
      return create(GetRegisteredRuntimeResponseSchema, { runtime: registeredRuntime(connection) });
    },
    addRuntime(request) {
      checkRoutedRuntimeId("runtime_id", request.runtimeId);
      const endpoint = checkedEndpoint(request);
      const existing = directory.get(request.runtimeId);
      if (existing) {
        // A retry is idempotent only with the same url and credentials (compared by the route's hash, never in the clear).
        if (!existing.embedded && existing.routeKey === routeKeyOf(endpoint))
          return create(AddRuntimeResponseSchema, { runtime: registeredRuntime(existing) });
        throw backendError(
          Code.AlreadyExists,
          ErrorReason.RUNTIME_ALREADY_REGISTERED,
          `runtime ${request.runtimeId} is already registered${existing.embedded ? " (the embedded runtime)" : " with another url or credentials; UpdateRuntime re-points it"}`,
          { field: "runtime_id", runtime_id: request.runtimeId },
        );
      }
      if (directory.size >= context.maxRuntimes) {
        throw backendError(
          Code.ResourceExhausted,
          ErrorReason.LIMIT_EXCEEDED,
          `the Backend holds ${context.maxRuntimes} runtimes, its most; remove one first`,
          { limit: String(context.maxRuntimes) },
        );
      }
      return create(AddRuntimeResponseSchema, { runtime: registeredRuntime(context.addRemote(request.runtimeId, endpoint)) });
    },
    updateRuntime(request) {
      checkRoutedRuntimeId("runtime_id", request.runtimeId);
      const endpoint = checkedEndpoint(request);
      const connection = find(request.runtimeId);
      if (connection.embedded) throw embeddedUnsupported(connection.runtimeId, "updated");
      const repointed = context.repointRemote(connection.runtimeId, endpoint) ?? connection;
      return create(UpdateRuntimeResponseSchema, { runtime: registeredRuntime(repointed) });
    },
    removeRuntime(request) {
      const connection = find(request.runtimeId);
      if (connection.embedded) throw embeddedUnsupported(connection.runtimeId, "removed");
      directory.remove(connection.runtimeId);
      return create(RemoveRuntimeResponseSchema);
    },
  };
}

/** What AddRuntime and UpdateRuntime say about a remote Runtime, checked field by field. */
interface EndpointFields {
  url: string;
  bearerToken: string;
  caCertificatePem: string;
}

/**
 * The endpoint a request describes, every field within its bound: an http
 * or https URL (kept to scheme, host and port), a header-safe token and a
 * CA bundle; each bad field is INVALID_ARGUMENT (or LIMIT_EXCEEDED) naming it.
 */
function checkedEndpoint(request: EndpointFields): RemoteEndpoint {
  checkBytes("url", request.url, MAX_URL_BYTES);
  checkBytes("bearer_token", request.bearerToken, MAX_TOKEN_BYTES);
  checkBytes("ca_certificate_pem", request.caCertificatePem, MAX_CA_BYTES);
  // A token that cannot travel in a header would fail every call, and the HTTP layer's error would quote it.
  if (request.bearerToken !== "" && !isHeaderSafeToken(request.bearerToken)) {
    throw invalidField("bearer_token", "must be visible ASCII characters only (no spaces, line breaks or other characters)");
  }
  let url: string;
  try {
    const parsed = new URL(request.url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("scheme");
    url = endpointOf(request.url);
  } catch {
    throw invalidField("url", "must be an http:// or https:// URL");
  }
  if (request.caCertificatePem !== "") checkCaBundle("ca_certificate_pem", request.caCertificatePem, url);
  const token = request.bearerToken === "" ? undefined : request.bearerToken;
  return {
    url,
    ...(token !== undefined ? { token: () => token } : {}),
    ...(request.caCertificatePem !== "" ? { ca: request.caCertificatePem } : {}),
  };
}

/** The embedded Runtime lives in the Backend's process: it is not the registry's to remove or re-point. */
function embeddedUnsupported(runtimeId: string, what: string): never {
  throw backendError(Code.FailedPrecondition, ErrorReason.UNSUPPORTED, `the embedded runtime cannot be ${what}`, { runtime_id: runtimeId });
}

/** Refuses a field over its size bound (LIMIT_EXCEEDED), as a Runtime refuses its own. */
function checkBytes(field: string, value: string, limit: number): void {
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > limit) throw fieldTooLarge(field, limit, bytes);
}

/** Longest ListRuntimes page token read, as a Runtime bounds its own (page-token.ts). */
const MAX_PAGE_TOKEN_LENGTH = 512;

/**
 * The runtime id a ListRuntimes page token continues after. Only what this
 * Backend writes is read: unpadded base64url within the bound. Anything else
 * is refused whole, never cut or skipped over (Node's decoder stops at "="
 * and ignores stray characters, so a cut token could still decode).
 */
function decodeAfter(token: string): string | undefined {
  if (token === "") return undefined;
  if (token.length > MAX_PAGE_TOKEN_LENGTH) throw invalidPageToken(`is longer than ${MAX_PAGE_TOKEN_LENGTH} characters`);
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw invalidPageToken("is not a valid page token");
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (Array.isArray(parsed) && parsed[0] === "backend.runtimes" && typeof parsed[1] === "string") return parsed[1];
  } catch {
    // fall through
  }
  throw invalidPageToken("is not a valid page token");
}
