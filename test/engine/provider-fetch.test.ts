import { once } from "node:events";
import type { ServerResponse } from "node:http";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { createProviderFetch, takeNodeBody } from "../../src/engine/provider-fetch.js";
import { localHttpServers } from "../support/local-http-servers.js";

/** The transport under the provider client: plain local HTTP servers play the far end. */
describe("provider fetch", () => {
  const { serve, closeNewest } = localHttpServers();

  async function readAll(body: AsyncIterable<Uint8Array>): Promise<string> {
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of body) text += decoder.decode(chunk, { stream: true });
    return text;
  }

  it("sends the request as given and decodes a gzip body, read as Node buffers or as the web body", async () => {
    const text = "data: hello\n\n".repeat(500);
    const seen: { method?: string; body: string; auth?: string }[] = [];
    const url = await serve(async (req, res) => {
      let body = "";
      for await (const chunk of req) body += String(chunk);
      seen.push({ method: req.method, body, auth: req.headers.authorization });
      res.writeHead(200, { "content-type": "text/event-stream", "content-encoding": "gzip" });
      res.end(gzipSync(text));
    });
    const providerFetch = createProviderFetch();
    const init = { method: "POST", headers: { authorization: "Bearer sk-test" }, body: JSON.stringify({ model: "m" }) };

    const first = await providerFetch(url, init);
    const nodeBody = takeNodeBody(first);
    expect(nodeBody).toBeDefined();
    expect(await readAll(nodeBody as AsyncIterable<Uint8Array>)).toBe(text);
    expect(takeNodeBody(first)).toBeUndefined();

    const second = await providerFetch(url, init);
    expect(second.status).toBe(200);
    expect(second.headers.get("content-type")).toBe("text/event-stream");
    expect(await second.text()).toBe(text);
    // Once the web body was read, the Node body is no longer on offer.
    expect(takeNodeBody(second)).toBeUndefined();
    expect(seen).toEqual([
      { method: "POST", body: '{"model":"m"}', auth: "Bearer sk-test" },
      { method: "POST", body: '{"model":"m"}', auth: "Bearer sk-test" },
    ]);
  });

  it("keeps the connections of more concurrent runs than Node's default pool (256) for the runs after them", async () => {
    const concurrent = 300;
    const sockets = new Set<unknown>();
    let waiting: ServerResponse[] = [];
    const url = await serve((req, res) => {
      sockets.add(req.socket);
      // Every request waits until all of its round are open, so each round holds `concurrent` connections at once.
      waiting.push(res);
      if (waiting.length < concurrent) return;
      for (const held of waiting.splice(0)) held.end("data: ok\n\n");
    });
    const providerFetch = createProviderFetch();
    const round = (): Promise<string[]> =>
      Promise.all(
        Array.from({ length: concurrent }, async () => {
          const response = await providerFetch(url, { method: "POST", body: "{}" });
          return readAll(takeNodeBody(response) as AsyncIterable<Uint8Array>);
        }),
      );
    expect(await round()).toEqual(Array(concurrent).fill("data: ok\n\n"));
    expect(sockets.size).toBe(concurrent);
    // A socket goes back to the pool just after its response ends.
    await new Promise((resolve) => setTimeout(resolve, 50));
    waiting = [];
    expect(await round()).toEqual(Array(concurrent).fill("data: ok\n\n"));
    expect(sockets.size).toBe(concurrent);
  });

  it("closes a connection idle in the pool past its idle time, but never a response that is only slow", async () => {
    const idleConnectionMs = 100;
    let socketClosed: Promise<unknown> | undefined;
    const url = await serve((req, res) => {
      socketClosed = once(req.socket, "close");
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: first\n\n");
      // Silent for four idle times mid-body: the response is being read, not idle.
      setTimeout(() => res.end("data: second\n\n"), 4 * idleConnectionMs);
    });
    const response = await createProviderFetch({ idleConnectionMs })(url, { method: "POST", body: "{}" });
    expect(await readAll(takeNodeBody(response) as AsyncIterable<Uint8Array>)).toBe("data: first\n\ndata: second\n\n");
    const endedAt = performance.now();
    await socketClosed;
    // The idle connection is closed by the pool, long before the server's own 5 s keep-alive timeout would.
    expect(performance.now() - endedAt).toBeLessThan(2_000);
  });

  it("an abort mid-body closes the connection and the read fails with an AbortError", async () => {
    let serverSawClose: Promise<unknown> | undefined;
    const url = await serve((_req, res) => {
      serverSawClose = once(res, "close");
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: first\n\n");
      // Never ends by itself.
    });
    const controller = new AbortController();
    const response = await createProviderFetch()(url, { method: "POST", body: "{}", signal: controller.signal });
    const reads = (takeNodeBody(response) as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    const first = await reads.next();
    expect(new TextDecoder().decode(first.value)).toBe("data: first\n\n");
    controller.abort();
    await expect(reads.next()).rejects.toMatchObject({ name: "AbortError" });
    await serverSawClose;
  });

  it("a connection lost mid-body is fetch's TypeError 'terminated', with the socket error as its cause", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: first\n\n", () => setTimeout(() => res.socket?.destroy(), 20));
    });
    const response = await createProviderFetch()(url, { method: "POST", body: "{}" });
    const error = await readAll(takeNodeBody(response) as AsyncIterable<Uint8Array>).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as TypeError).message).toBe("terminated");
    expect((error as TypeError).cause).toBeInstanceOf(Error);
  });

  it("a refused connection is fetch's TypeError 'fetch failed', with the socket error as its cause", async () => {
    const url = await serve(() => undefined);
    await closeNewest();
    const error = await createProviderFetch()(url, { method: "POST", body: "{}" }).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as TypeError).message).toBe("fetch failed");
    expect(((error as TypeError).cause as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
  });
});
