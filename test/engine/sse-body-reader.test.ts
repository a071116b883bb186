import { once } from "node:events";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { createProviderFetch } from "../../src/engine/provider-fetch.js";
import { PARSE_PIECE_BYTES, SseBodyReader, type SsePayloadParser } from "../../src/engine/sse-body-reader.js";
import { sseDataBatches, SseEventTooLargeError } from "../../src/engine/sse-events.js";
import { localHttpServers } from "../support/local-http-servers.js";

/** One payload per complete `data:` line, enough to watch the reader's pushing, pausing and errors. */
function lineParser(): SsePayloadParser {
  let partial = "";
  return {
    feed(text, out) {
      const lines = (partial + text).split("\n");
      partial = lines.pop() as string;
      for (const line of lines) if (line.startsWith("data: ")) out.push(line.slice(6));
    },
    end(out) {
      if (partial.startsWith("data: ")) out.push(partial.slice(6));
      partial = "";
    },
    done: false,
  };
}
const mapped = (error: unknown): unknown => new TypeError("terminated", { cause: error });
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("SSE body reader", () => {
  it("hands over a payload as soon as it is read, and what arrived meanwhile when asked", async () => {
    const body = new PassThrough();
    const reader = new SseBodyReader(body, lineParser(), mapped);
    const waiting = reader.next();
    body.write("data: a\n\n");
    expect(await waiting).toEqual({ done: false, value: ["a"] });
    body.write("data: b\n\n");
    body.write("data: c\n\n");
    await tick();
    expect(await reader.next()).toEqual({ done: false, value: ["b"] });
    expect(await reader.next()).toEqual({ done: false, value: ["c"] });
    body.end();
    expect(await reader.next()).toEqual({ done: true, value: undefined });
  });

  it("parses a burst that arrived while the consumer was busy a piece at a time, when asked", async () => {
    const body = new PassThrough();
    const parsed: string[] = [];
    const lines = lineParser();
    const counting: SsePayloadParser = {
      feed(text, out) {
        parsed.push(text);
        lines.feed(text, out);
      },
      end: (out) => lines.end(out),
      done: false,
    };
    const reader = new SseBodyReader(body, counting, mapped);
    const event = `data: ${"p".repeat(93)}\n`; // 100 bytes
    body.write(event.repeat(400));
    await tick();
    // Read but not parsed: nobody asked.
    expect(parsed).toEqual([]);
    const first = (await reader.next()).value as string[];
    expect(first.length).toBe(Math.floor(PARSE_PIECE_BYTES / 100));
    let total = first.length;
    while (total < 400) total += ((await reader.next()).value as string[]).length;
    expect(total).toBe(400);
    expect(parsed.length).toBe(Math.ceil(40_000 / PARSE_PIECE_BYTES));
  });

  it("keeps a character whole when a parse piece ends inside it", async () => {
    const body = new PassThrough();
    const reader = new SseBodyReader(body, lineParser(), mapped);
    // The 4-byte emoji starts two bytes before the first piece's end.
    const text = `${"a".repeat(PARSE_PIECE_BYTES - "data: ".length - 2)}🌍b`;
    body.write(Buffer.from(`data: ${text}\n`));
    body.end();
    await tick();
    const payloads: string[] = [];
    for await (const batch of reader) payloads.push(...batch);
    expect(payloads).toEqual([text]);
  });

  it("pauses the body past the read-ahead bound and resumes it once the consumer has taken enough", async () => {
    const body = new PassThrough();
    const reader = new SseBodyReader(body, lineParser(), mapped);
    const payload = "x".repeat(64 * 1024);
    for (let i = 0; i < 6; i++) body.write(`data: ${payload}\n\n`);
    await tick();
    expect(body.isPaused()).toBe(true);
    expect(await reader.next()).toEqual({ done: false, value: [payload] });
    // Under the bound again after one payload taken: reading goes on.
    expect(body.isPaused()).toBe(false);
    body.end();
    let total = 1;
    for (let step = await reader.next(); step.done !== true; step = await reader.next()) total += step.value.length;
    expect(total).toBe(6);
  });

  it("delivers what was read before a failure, then the failure as fetch maps it", async () => {
    const body = new PassThrough();
    const reader = new SseBodyReader(body, lineParser(), mapped);
    body.write("data: a\n\n");
    await tick();
    body.destroy(new Error("socket reset"));
    await tick();
    expect(await reader.next()).toEqual({ done: false, value: ["a"] });
    await expect(reader.next()).rejects.toMatchObject({ name: "TypeError", message: "terminated", cause: { message: "socket reset" } });
  });

  it("a body closed before its end, without an error, is a failure too (a cut), not a clean end", async () => {
    const body = new PassThrough();
    const reader = new SseBodyReader(body, lineParser(), mapped);
    const waiting = reader.next();
    body.destroy();
    await expect(waiting).rejects.toMatchObject({ message: "terminated" });
  });

  it("hands over the parser's last event at a clean end of the body, once, but not at a cut", async () => {
    const ended = new PassThrough();
    const reader = new SseBodyReader(ended, lineParser(), mapped);
    const waiting = reader.next();
    ended.end("data: a\ndata: b");
    expect(await waiting).toEqual({ done: false, value: ["a"] });
    expect(await reader.next()).toEqual({ done: false, value: ["b"] });
    expect(await reader.next()).toEqual({ done: true, value: undefined });

    const cut = new PassThrough();
    const cutReader = new SseBodyReader(cut, lineParser(), mapped);
    cut.write("data: a\ndata: b");
    await tick();
    cut.destroy();
    expect(await cutReader.next()).toEqual({ done: false, value: ["a"] });
    await expect(cutReader.next()).rejects.toThrow("terminated");
  });

  it("leaving early destroys the body", async () => {
    const body = new PassThrough();
    const reader = new SseBodyReader(body, lineParser(), mapped);
    body.write("data: a\n\n");
    expect(await reader.next()).toEqual({ done: false, value: ["a"] });
    expect(await reader.return()).toEqual({ done: true, value: undefined });
    expect(body.destroyed).toBe(true);
  });

  describe("over a provider connection", () => {
    const { serve } = localHttpServers();

    it("reads the provider fetch's body push-based, ignores events after [DONE], and an abort closes the connection", async () => {
      let serverSawClose: Promise<unknown> | undefined;
      const url = await serve((_req, res) => {
        serverSawClose = once(res, "close");
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write('data: {"n":1}\n\ndata: {"n":2}\n\n');
      });
      const controller = new AbortController();
      const response = await createProviderFetch()(url, { method: "POST", body: "{}", signal: controller.signal });
      const batches = sseDataBatches(response, 1024);
      expect(batches).toBeInstanceOf(SseBodyReader);
      expect(await batches.next()).toEqual({ done: false, value: ['{"n":1}', '{"n":2}'] });
      const next = batches.next();
      controller.abort();
      await expect(next).rejects.toMatchObject({ name: "AbortError" });
      await serverSawClose;
    });

    it("stops at [DONE] and fails an event over the bound", async () => {
      const url = await serve((_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(`data: a\n\ndata: [DONE]\n\ndata: after\n\n`);
      });
      const response = await createProviderFetch()(url, { method: "POST", body: "{}" });
      const payloads: string[] = [];
      for await (const batch of sseDataBatches(response, 1024)) payloads.push(...batch);
      expect(payloads).toEqual(["a"]);

      const tooLong = await serve((_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        // Still open when the bound is passed: the parser has to hold it, which is what is bounded.
        res.write(`data: ${"y".repeat(4096)}`, () => setTimeout(() => res.end("\n\n"), 50));
      });
      const long = sseDataBatches(await createProviderFetch()(tooLong, { method: "POST", body: "{}" }), 1024);
      await expect(long.next()).rejects.toBeInstanceOf(SseEventTooLargeError);
    });
  });
});
