import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { performance } from "node:perf_hooks";

/**
 * A real HTTP server speaking the OpenAI chat-completions wire format, driven
 * by a per-test script. Tests talk to it through the real `openai` SDK, so
 * the backend under test is exercised exactly as against a real provider:
 * SSE framing, tool-call chunks split across events, usage in the last
 * chunk, error statuses with `Retry-After`, cut and slow streams.
 */

/** One scripted answer to one request. */
export type FakeResponse =
  | {
      kind: "stream";
      /** Chunk payloads, each sent as one `data: {...}` SSE event. */
      chunks: readonly object[];
      /** Pause before each event, so a test can act mid-stream. */
      delayMs?: number;
      /**
       * How the stream ends: "done" sends `data: [DONE]` and ends the response;
       * "cut" destroys the socket after `cutAfter` events (default: all);
       * "hang" keeps the connection open until the client closes it.
       */
      end?: "done" | "cut" | "hang";
      cutAfter?: number;
      headers?: Record<string, string>;
      /**
       * Sends every event (and the end) in one write, as a provider flushing
       * a burst does, so the client reads them together. Ignores `delayMs`.
       */
      oneWrite?: boolean;
      /**
       * Before the event at an index, waits for its promise: holds the stream
       * at a point the test chose until the test has seen what it wants to
       * see of it (a state that lasts only as long as the stream is between
       * two points, which a poll may otherwise miss).
       */
      waitBefore?: Readonly<Record<number, Promise<void>>>;
    }
  /**
   * The response body exactly as given, for SSE framing a well-behaved
   * provider never sends (CRLF, comments, `event:` fields, a line or a
   * character split across writes): each write goes out as one socket write,
   * `delayMs` apart. "end" ends the response after the last write, "cut"
   * destroys the socket then, "hang" keeps it open until the client closes it.
   */
  | {
      kind: "raw";
      writes: readonly (string | Uint8Array)[];
      delayMs?: number;
      end?: "end" | "cut" | "hang";
      headers?: Record<string, string>;
    }
  | { kind: "error"; status: number; body?: unknown; headers?: Record<string, string> }
  /** Destroys the connection without any response (a connection error). */
  | { kind: "reset" }
  /** Never answers: no headers, no body, until the client gives up. */
  | { kind: "stall" };

/** What the fake server saw of one request. */
export interface RecordedRequest {
  path: string;
  headers: IncomingHttpHeaders;
  /** The JSON body, parsed. */
  body: ChatRequestBody;
  receivedAt: number;
  /** Which connection carried it: connections are numbered from 1 as they open (reuse shows as a repeat). */
  connection: number;
  /** When the client closed the connection before the response ended (performance.now()). */
  clientClosedAt?: number;
}

/** The parts of a chat-completions request body tests assert on. */
export interface ChatRequestBody {
  model: string;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  temperature?: number;
  max_completion_tokens?: number;
  messages: ChatRequestMessage[];
  tools?: { type: string; function: { name: string; description?: string } }[];
}

/** A message as the client sent it. */
export interface ChatRequestMessage {
  role: string;
  content?: string | null;
  tool_call_id?: string;
  tool_calls?: { id: string; type: string; function: { name: string; arguments: string } }[];
}

/** A running fake provider. */
export interface FakeOpenAI {
  /** Base URL to hand to the backend, ending in `/v1`. */
  readonly baseURL: string;
  /** Every request received, in order. */
  readonly requests: RecordedRequest[];
  /** Queues responses; each request takes the next one. */
  enqueue(...responses: FakeResponse[]): void;
  /** Response used when the queue is empty (default: a 500 saying so). */
  setFallback(response: FakeResponse): void;
  /** Resolves when at least `count` requests have arrived. */
  waitForRequests(count: number): Promise<void>;
  /** Resolves when the client closed the connection of request `index` early. */
  waitForClientClose(index: number): Promise<number>;
  /** Connections to the fake that are open now, as the server sees them (a leak check). */
  openConnections(): number;
  /** Resolves once at most `count` connections are open. */
  waitForOpenConnections(count: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts a fake provider on 127.0.0.1, port 0. */
export async function startFakeOpenAI(): Promise<FakeOpenAI> {
  const queue: FakeResponse[] = [];
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const connectionIds = new WeakMap<Socket, number>();
  const waiters = new Set<() => void>();
  let connectionCount = 0;
  let fallback: FakeResponse = {
    kind: "error",
    status: 500,
    body: { error: { message: "fake: no scripted response left", type: "server_error" } },
  };
  const notify = (): void => {
    for (const waiter of waiters) waiter();
  };

  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (part: Buffer) => parts.push(part));
    req.on("end", () => {
      const record: RecordedRequest = {
        path: req.url ?? "",
        headers: req.headers,
        body: JSON.parse(Buffer.concat(parts).toString("utf8")) as ChatRequestBody,
        receivedAt: performance.now(),
        connection: connectionIds.get(req.socket) ?? 0,
      };
      requests.push(record);
      res.on("close", () => {
        if (!res.writableFinished) {
          record.clientClosedAt = performance.now();
          notify();
        }
      });
      notify();
      void respond(res, queue.shift() ?? fallback);
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    connectionIds.set(socket, ++connectionCount);
    socket.on("close", () => {
      sockets.delete(socket);
      notify();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  const waitUntil = <T>(probe: () => T | undefined): Promise<T> =>
    new Promise((resolve) => {
      const check = (): void => {
        const value = probe();
        if (value !== undefined) {
          waiters.delete(check);
          resolve(value);
        }
      };
      waiters.add(check);
      check();
    });

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    enqueue: (...responses) => queue.push(...responses),
    setFallback: (response) => {
      fallback = response;
    },
    waitForRequests: (count) => waitUntil(() => (requests.length >= count ? true : undefined)).then(() => undefined),
    waitForClientClose: (index) => waitUntil(() => requests[index]?.clientClosedAt),
    openConnections: () => sockets.size,
    waitForOpenConnections: (count) => waitUntil(() => (sockets.size <= count ? true : undefined)).then(() => undefined),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function respond(res: ServerResponse, response: FakeResponse): Promise<void> {
  switch (response.kind) {
    case "reset":
      res.socket?.destroy();
      return;
    case "stall":
      return;
    case "error":
      res.writeHead(response.status, { "content-type": "application/json", ...response.headers });
      res.end(JSON.stringify(response.body ?? { error: { message: `fake error ${response.status}` } }));
      return;
    case "stream":
      await stream(res, response);
      return;
    case "raw":
      await raw(res, response);
      return;
  }
}

async function stream(res: ServerResponse, response: Extract<FakeResponse, { kind: "stream" }>): Promise<void> {
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    connection: "keep-alive",
    ...response.headers,
  });
  res.flushHeaders();
  const end = response.end ?? "done";
  if (response.oneWrite && end === "done") {
    res.end(`${response.chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join("")}data: [DONE]\n\n`);
    return;
  }
  const limit = end === "cut" ? (response.cutAfter ?? response.chunks.length) : response.chunks.length;
  for (let i = 0; i < limit; i++) {
    await response.waitBefore?.[i];
    if (response.delayMs) await delay(response.delayMs);
    if (res.destroyed) return;
    res.write(`data: ${JSON.stringify(response.chunks[i])}\n\n`);
  }
  if (end === "cut") {
    // Let the written events reach the client before the connection dies.
    await delay(20);
    res.socket?.destroy();
  } else if (end === "done") {
    if (response.delayMs) await delay(response.delayMs);
    res.end("data: [DONE]\n\n");
  }
}

async function raw(res: ServerResponse, response: Extract<FakeResponse, { kind: "raw" }>): Promise<void> {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive", ...response.headers });
  res.flushHeaders();
  for (const write of response.writes) {
    if (response.delayMs) await delay(response.delayMs);
    if (res.destroyed) return;
    res.write(write);
  }
  const end = response.end ?? "end";
  if (end === "cut") {
    await delay(20);
    res.socket?.destroy();
  } else if (end === "end") {
    res.end();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
