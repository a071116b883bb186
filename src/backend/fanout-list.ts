import { create, type UnknownField } from "@bufbuild/protobuf";
import { createHash } from "node:crypto";
import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import { RuntimeFailureSchema, RuntimeHealth, type RuntimeFailure } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { ListWorkersRequest, ListWorkersResponse } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import type { Logger } from "../runtime/index.js";
import { invalidField, invalidPageToken } from "./backend-errors.js";
import { listWorkersRaw, workerPageResponse } from "./raw-worker-page.js";
import { checkListFilters } from "./request-checks.js";
import type { RuntimeConnection } from "./runtime-connection.js";
import { compareIds, type RuntimeDirectory } from "./runtime-directory.js";
import { fromUpstream } from "./upstream-errors.js";

/** Page sizes, as the Runtime's own (documented in ListWorkersRequest). */
const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 500;
const TOKEN_KIND = "backend.workers";

/**
 * Where a listing across Runtimes continues: inside Runtime `runtimeId` at
 * its own page token, or (`after`) with the first Runtime whose id sorts
 * after it. Positions name Runtimes by id, never by index, so a token stays
 * valid when Runtimes are added or removed: a removed one is skipped, a new
 * one is listed if its id sorts after the position.
 */
interface Position {
  runtimeId: string;
  token: string;
  after: boolean;
}

/** Options for {@link listAcrossRuntimes}. */
export interface FanoutOptions {
  /** Deadline of each Runtime's call; a slow Runtime costs this, not more. */
  perRuntimeTimeoutMs: number;
  /** The client's own deadline, if shorter calls must respect it. */
  clientTimeoutMs?: number | undefined;
  /** Whether the response is binary protobuf (else JSON: Workers must be decoded). */
  binary: boolean;
  logger: Logger;
  /** The served call's context values, passed to each Runtime's call (its request id goes on). */
  contextValues?: ContextValues | undefined;
}

/**
 * One Runtime's answer or failure. `refused`: the Runtime's typed refusal of
 * the client's request (its page token or filters), which is the client's
 * error to see (as direct), not a Runtime failure to list and skip.
 */
type Fetched =
  | { ok: true; workers: UnknownField[]; next: string }
  | { ok: false; failure: RuntimeFailure; refused?: ConnectError | undefined };

/**
 * ListWorkers with no runtime_id: Workers of every Runtime, ordered by
 * runtime_id then each Runtime's own order. The Runtime where the page
 * starts is asked first; if it runs out (or fails), the next two are asked
 * in parallel for what the page still needs, then the next four, and so on,
 * each call within its own per-Runtime deadline. The usual page costs one
 * upstream call, a page over many small Runtimes log2(Runtimes) rounds, and
 * a dead Runtime one deadline for its round, while no round over-fetches
 * more than twice the previous one. Runtimes that are not READY (nor
 * draining) are named in failed_runtimes without being called; so is any Runtime whose call
 * fails. If the first Runtime has not answered within a fifth of its
 * deadline, the second is asked at once (a hedge), so a dead first Runtime
 * costs about one deadline rather than a deadline plus a round.
 */
export async function listAcrossRuntimes(
  directory: RuntimeDirectory,
  request: ListWorkersRequest,
  signal: AbortSignal,
  options: FanoutOptions,
): Promise<ListWorkersResponse> {
  if (request.pageSize < 0) throw invalidField("page_size", "must not be negative");
  // Checked here, as each Runtime would: a bad filter is the client's error, not every Runtime's failure.
  checkListFilters(request);
  const size = request.pageSize === 0 ? DEFAULT_PAGE_SIZE : Math.min(request.pageSize, MAX_PAGE_SIZE);
  const filter = filterDigest(request);
  const position = decodePosition(request.pageToken, filter);
  const all = directory
    .sorted()
    .filter((c) => !position || (position.after ? c.runtimeId > position.runtimeId : c.runtimeId >= position.runtimeId));
  const failed: RuntimeFailure[] = [];
  const candidates: RuntimeConnection[] = [];
  for (const connection of all) {
    // A draining Runtime still answers (RuntimeConnection.routable): its workers do not vanish from the list.
    if (connection.routable) candidates.push(connection);
    // Not a demanded attempt (RuntimeConnection.demandAttempt): the console lists every 3 s, which would dial every away runtime for ever.
    else failed.push(failureFromHealth(connection));
  }
  const startToken = (c: RuntimeConnection): string =>
    position && !position.after && c.runtimeId === position.runtimeId ? position.token : "";
  const fetch = (c: RuntimeConnection, token: string, pageSize: number): Promise<Fetched> =>
    fetchPage(c, { ...request, runtimeId: c.runtimeId, pageSize, pageToken: token }, signal, options);

  const workers: UnknownField[] = [];
  const hedged = new Map<RuntimeConnection, Promise<Fetched>>();
  let next: Position | undefined;
  let index = 0;
  let waveSize = 1;
  waves: while (index < candidates.length && workers.length < size) {
    const need = size - workers.length;
    const wave = candidates.slice(index, index + waveSize);
    waveSize *= 2;
    // A hedged answer was asked for at least `need` Workers, which the checks below allow.
    const pending = wave.map((c) => hedged.get(c) ?? fetch(c, startToken(c), need));
    const second = candidates[1];
    if (index === 0 && second && !(await answeredWithin(pending[0] as Promise<Fetched>, options.perRuntimeTimeoutMs / 5))) {
      // The first Runtime is slow: ask the next one now, so a dead first Runtime costs one deadline, not more.
      hedged.set(second, fetch(second, startToken(second), need));
    }
    index += wave.length;
    for (const [i, answer] of pending.entries()) {
      // In order, so a page filled by an earlier Runtime does not wait for later ones.
      const result = await answer;
      const connection = wave[i] as RuntimeConnection;
      if (!result.ok) {
        if (result.refused) throw result.refused;
        failed.push(result.failure);
        continue;
      }
      const room = size - workers.length;
      const taken = result.workers.slice(0, room);
      workers.push(...taken);
      if (taken.length < result.workers.length) {
        // The page ends inside this Runtime's answer: ask it for exactly what was taken to get a token from there.
        const exact = await fetch(connection, startToken(connection), taken.length);
        if (exact.ok && sameWorkers(exact.workers, taken)) {
          next = positionAfter(connection, exact.next);
        } else if (workers.length > taken.length) {
          // Its list changed between the two calls (or the second failed): that token would not follow what the
          // page holds, and a worker could be skipped. End the page before this Runtime; the next starts there.
          workers.length -= taken.length;
          next = { runtimeId: connection.runtimeId, token: startToken(connection), after: false };
        } else {
          next = exact.ok ? positionAfter(connection, exact.next) : { runtimeId: connection.runtimeId, token: "", after: true };
          if (!exact.ok) failed.push(exact.failure);
        }
        break waves;
      }
      if (result.next !== "" && (workers.length === size || result.workers.length < need)) {
        // Full page, or the Runtime clamped the page below what was asked: continue inside it.
        next = positionAfter(connection, result.next);
        break waves;
      }
      if (workers.length === size) {
        next = { runtimeId: connection.runtimeId, token: "", after: true };
        break waves;
      }
    }
  }
  if (signal.aborted) throw ConnectError.from(signal.reason);
  const more = next && (!next.after || directory.sorted().some((c) => c.runtimeId > (next as Position).runtimeId));
  const failedRuntimes = failed.sort((a, b) => (a.runtimeId < b.runtimeId ? -1 : a.runtimeId > b.runtimeId ? 1 : 0));
  return workerPageResponse(workers, more && next ? encodePosition(next, filter) : "", failedRuntimes, options.binary);
}

/** Whether two answers hold the same Workers, byte for byte. */
function sameWorkers(a: readonly UnknownField[], b: readonly UnknownField[]): boolean {
  return a.length === b.length && a.every((field, i) => Buffer.from(field.data).equals((b[i] as UnknownField).data));
}

/** Whether `answer` settles within `ms`. */
function answeredWithin(answer: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void answer.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function fetchPage(
  connection: RuntimeConnection,
  request: ListWorkersRequest,
  signal: AbortSignal,
  options: FanoutOptions,
): Promise<Fetched> {
  const ours = options.clientTimeoutMs === undefined || options.clientTimeoutMs >= options.perRuntimeTimeoutMs;
  const timeoutMs = ours ? options.perRuntimeTimeoutMs : options.clientTimeoutMs;
  const generation = connection.routeGeneration;
  try {
    const page = await listWorkersRaw(connection.transport, request, { signal, timeoutMs, contextValues: options.contextValues });
    return { ok: true, workers: page.workers, next: page.nextPageToken };
  } catch (error) {
    const upstream = ConnectError.from(error);
    // A client's own short deadline says nothing about the runtime's health.
    if (ours || upstream.code !== Code.DeadlineExceeded) connection.reportFailure(upstream, generation);
    const typed = fromUpstream(upstream, connection.runtimeId, options.logger, signal);
    const reason = typed.findDetails(ErrorDetailSchema)[0]?.reason ?? ErrorReason.RUNTIME_UNAVAILABLE;
    return {
      ok: false,
      refused: isRefusal(upstream, reason) ? typed : undefined,
      failure: create(RuntimeFailureSchema, {
        runtimeId: connection.runtimeId,
        health: connection.health,
        reason,
        message: typed.rawMessage,
      }),
    };
  }
}

/**
 * Whether a Runtime refused the client's request itself (its page token,
 * or a filter over that Runtime's own bounds): the client's error to see,
 * as direct. A RUNTIME_MISMATCH is the Runtime's fault (it is not the id
 * it was registered as), so it is listed as a failure instead.
 */
function isRefusal(upstream: ConnectError, reason: ErrorReason): boolean {
  return upstream.code === Code.InvalidArgument && reason !== ErrorReason.RUNTIME_MISMATCH;
}

function positionAfter(connection: RuntimeConnection, token: string): Position {
  return token === ""
    ? { runtimeId: connection.runtimeId, token: "", after: true }
    : { runtimeId: connection.runtimeId, token, after: false };
}

/** A Runtime skipped because of its health, with the reason that health implies. */
function failureFromHealth(connection: RuntimeConnection): RuntimeFailure {
  const state = connection.snapshot;
  const reason =
    state.health === RuntimeHealth.UNAUTHENTICATED
      ? ErrorReason.RUNTIME_UNAUTHENTICATED
      : state.health === RuntimeHealth.INCOMPATIBLE
        ? ErrorReason.RUNTIME_INCOMPATIBLE
        : ErrorReason.RUNTIME_UNAVAILABLE;
  return create(RuntimeFailureSchema, { runtimeId: connection.runtimeId, health: state.health, reason, message: state.healthMessage });
}

/**
 * The filters a token is bound to, in one spelling whatever the request's
 * order or repeats (as the Runtime binds its own tokens): a token reused
 * with other filters would otherwise continue silently from a position
 * between Runtimes, where no Runtime token goes on to be checked.
 */
function filterDigest(request: ListWorkersRequest): string {
  const statuses = [...new Set(request.statuses)].sort((a, b) => a - b);
  const labels = Object.entries(request.labelSelector).sort(([a], [b]) => compareIds(a, b));
  return createHash("sha256")
    .update(JSON.stringify([statuses, labels]))
    .digest("base64url")
    .slice(0, 16);
}

function encodePosition(position: Position, filter: string): string {
  return Buffer.from(JSON.stringify([TOKEN_KIND, filter, position.runtimeId, position.token, position.after]), "utf8").toString(
    "base64url",
  );
}

function decodePosition(token: string, filter: string): Position | undefined {
  if (token === "") return undefined;
  let parsed: unknown;
  try {
    // Only what encodePosition writes (unpadded base64url): Node's decoder stops at "=" and skips stray
    // characters, so a token with anything appended would otherwise still decode.
    parsed =
      token.length <= 2048 && /^[A-Za-z0-9_-]+$/.test(token) ? JSON.parse(Buffer.from(token, "base64url").toString("utf8")) : undefined;
  } catch {
    // the typed error below
  }
  if (Array.isArray(parsed) && parsed.length === 5 && parsed[0] === TOKEN_KIND) {
    const [, digest, runtimeId, upstream, after] = parsed as unknown[];
    if (typeof runtimeId === "string" && typeof upstream === "string" && typeof after === "boolean") {
      if (digest !== filter) throw invalidPageToken("was issued for a request with other filters; change only page_size between pages");
      return { runtimeId, token: upstream, after };
    }
  }
  throw invalidPageToken("is not a valid page token");
}
