import http from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import zlib from "node:zlib";

/**
 * The `fetch` the `openai` client is given: node:http with keep-alive
 * agents instead of Node's built-in fetch (undici), so a streamed answer's
 * body can be read as Node buffers. Built-in fetch hands every read of the
 * body through a web ReadableStream (a promise, a queue and a transferable
 * check per read, on top of undici's own parser); for a paced stream, where
 * every provider chunk is its own read, that was 10–15 % of the runtime's
 * CPU per relayed chunk in the issue-9 profile.
 *
 * The SDK still builds the request, sets the timeout and maps statuses to
 * its typed errors: this answers with a standard `Response`. Its body is a
 * web stream made only if someone reads it (error bodies, the SDK's own
 * parsing); the SSE reader takes the Node body directly with
 * {@link takeNodeBody}. What fetch does that the provider path relies on is
 * kept: an abort (the run's cancel, the SDK's timeout, the idle timeout)
 * destroys the request and its connection at once and rejects with an
 * `AbortError`, a connection lost mid-body is a `TypeError("terminated")`
 * with the socket error as its cause (a stream cut, as with fetch), and
 * gzip, deflate and brotli bodies are decoded. A request body the SDK
 * streams (not a string or bytes) goes to the built-in fetch.
 * `idleConnectionMs` overrides {@link IDLE_CONNECTION_MS} (tests).
 */
export function createProviderFetch(options: { idleConnectionMs?: number } = {}): typeof fetch {
  const pool = { keepAlive: true, maxFreeSockets: MAX_IDLE_CONNECTIONS, timeout: options.idleConnectionMs ?? IDLE_CONNECTION_MS };
  const agents = {
    "http:": new http.Agent(pool),
    "https:": new https.Agent(pool),
  };
  const providerFetch = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const body = init.body;
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    const plainBody = body === undefined || body === null || typeof body === "string" || body instanceof Uint8Array;
    if (!plainBody || typeof input === "object" || (url.protocol !== "http:" && url.protocol !== "https:")) {
      return fetch(input, init);
    }
    return request(url, init, body ?? undefined, url.protocol === "https:" ? agents["https:"] : agents["http:"]);
  };
  return providerFetch as typeof fetch;
}

/**
 * Idle provider connections kept for reuse, per provider host and port.
 * Node keeps 256: past 256 concurrent runs, each run that ended closed its
 * connection and the next one opened a new one, a TCP and TLS handshake
 * (and a round trip or two to a remote provider) before its first token.
 * This keeps enough for the runtime's design load of 1,000 concurrent runs.
 */
const MAX_IDLE_CONNECTIONS = 1_024;
/**
 * How long a connection may sit idle in the pool before it is closed, for
 * providers that never close idle connections themselves; a provider's
 * shorter `Keep-Alive: timeout=N` hint wins (Node honours it once the pool
 * has a timeout), so a connection the provider is about to close is not
 * reused. It does not apply to a response being read: a stream's pauses are
 * the SDK's and the run's timeouts to judge.
 */
const IDLE_CONNECTION_MS = 60_000;

/** Node bodies of the responses this fetch made, until the SSE reader takes one. */
const nodeBodies = new WeakMap<Response, Readable>();

/**
 * The Node body behind a response this module's fetch made, for reading
 * without web streams; undefined for any other response, or once its web
 * body has been read. Each body is taken at most once.
 */
export function takeNodeBody(response: Response): Readable | undefined {
  const body = nodeBodies.get(response);
  nodeBodies.delete(response);
  return body;
}

function request(url: URL, init: RequestInit, body: string | Uint8Array | undefined, agent: http.Agent): Promise<Response> {
  const signal = init.signal ?? undefined;
  if (signal?.aborted) return Promise.reject(abortError(signal));
  const headers: Record<string, string> = {};
  new Headers(init.headers).forEach((value, key) => {
    headers[key] = value;
  });
  if (body !== undefined) headers["content-length"] = String(typeof body === "string" ? Buffer.byteLength(body) : body.byteLength);
  headers["accept-encoding"] ??= "gzip, deflate, br";
  return new Promise((resolve, reject) => {
    const req = (url.protocol === "https:" ? https : http).request(url, { method: init.method ?? "GET", headers, agent });
    let responseBody: Readable | undefined;
    const onAbort = (): void => {
      const error = abortError(signal);
      // The body first, so a reader sees the AbortError rather than a lost connection.
      responseBody?.destroy(error);
      req.destroy(error);
      reject(error);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    req.on("error", (error) => {
      signal?.removeEventListener("abort", onAbort);
      // As built-in fetch reports a failed connection (no-op once the response is out).
      reject(new TypeError("fetch failed", { cause: error }));
    });
    req.once("response", (res) => {
      res.once("close", () => signal?.removeEventListener("abort", onAbort));
      const decoded = decode(res);
      responseBody = decoded;
      // Errors reach whoever reads the body; with no reader yet they must not be unhandled.
      decoded.on("error", () => undefined);
      const responseHeaders = new Headers();
      for (const [name, value] of Object.entries(res.headers)) {
        if (Array.isArray(value)) for (const v of value) responseHeaders.append(name, v);
        else if (value !== undefined) responseHeaders.set(name, value);
      }
      const status = res.statusCode ?? 0;
      const nullBody = init.method === "HEAD" || status === 204 || status === 205 || status === 304;
      const response: Response = new Response(nullBody ? null : lazyWebBody(decoded, () => nodeBodies.delete(response)), {
        status,
        statusText: res.statusMessage ?? "",
        headers: responseHeaders,
      });
      if (nullBody) decoded.resume();
      else nodeBodies.set(response, withFetchErrors(decoded));
      resolve(response);
    });
    req.end(body);
  });
}

/** Fetch's "terminated": the body ended early because the connection was lost (an abort stays an AbortError). */
function terminated(error: Error): Error {
  return error.name === "AbortError" ? error : new TypeError("terminated", { cause: error });
}

/** A Node body's read error as fetch reports it (for readers of {@link takeNodeBody}'s body that do not use its iterator). */
export function fetchBodyError(error: unknown): unknown {
  return error instanceof Error ? terminated(error) : error;
}

/** Decodes a compressed body, as fetch does. */
function decode(res: http.IncomingMessage): Readable {
  const encoding = (res.headers["content-encoding"] ?? "").trim().toLowerCase();
  const decoder =
    encoding === "gzip" || encoding === "x-gzip"
      ? zlib.createGunzip()
      : encoding === "deflate"
        ? zlib.createInflate()
        : encoding === "br"
          ? zlib.createBrotliDecompress()
          : undefined;
  if (!decoder) return res;
  res.on("error", (error) => decoder.destroy(error));
  decoder.on("close", () => res.destroy());
  return res.pipe(decoder);
}

/** The Node body with its read errors turned into fetch's. */
function withFetchErrors(body: Readable): Readable {
  const read = body[Symbol.asyncIterator].bind(body);
  body[Symbol.asyncIterator] = () => {
    const it = read();
    return {
      next: () =>
        it.next().catch((error: unknown) => {
          throw error instanceof Error ? terminated(error) : error;
        }),
      return: (value?: unknown) => it.return?.(value) ?? Promise.resolve({ done: true, value: undefined }),
      throw: (error?: unknown) => it.throw?.(error) ?? Promise.reject(error),
      [Symbol.asyncIterator]() {
        return this;
      },
      [Symbol.asyncDispose]: () => Promise.resolve(),
    };
  };
  return body;
}

/** A web body that reads the Node one only when pulled (the SSE reader never pulls it). */
function lazyWebBody(body: Readable, claim: () => void): ReadableStream<Uint8Array> {
  let attached = false;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (attached) {
          body.resume();
          return;
        }
        attached = true;
        claim();
        body.on("data", (chunk: Buffer) => {
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          if ((controller.desiredSize ?? 0) <= 0) body.pause();
        });
        body.once("end", () => controller.close());
        body.once("error", (error) => controller.error(terminated(error)));
      },
      cancel() {
        body.destroy();
      },
    },
    { highWaterMark: 0 },
  );
}

function abortError(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error && reason.name === "AbortError") return reason;
  return new DOMException("This operation was aborted", "AbortError");
}
