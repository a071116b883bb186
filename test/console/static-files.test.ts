import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendArgs, createStaticFilesHandler } from "../../src/console/index.js";

describe("console static files", () => {
  let root: string;
  let server: http.Server;
  let base: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "console-static-"));
    mkdirSync(join(root, "web"));
    writeFileSync(join(root, "web", "index.html"), "<!doctype html><title>console</title>");
    writeFileSync(join(root, "web", "app.js"), "export {};");
    writeFileSync(join(root, "secret.txt"), "outside");
    writeFileSync(join(root, "web", "app.js.LEGAL.txt"), "licences");
    // Links out of the directory, and files a build tool or editor may leave in it.
    symlinkSync(join(root, "secret.txt"), join(root, "web", "linked.txt"));
    symlinkSync(root, join(root, "web", "up"));
    symlinkSync(join(root, "web", "app.js"), join(root, "web", "alias.js"));
    writeFileSync(join(root, "web", ".env"), "OPENAI_API_KEY=sk-secret");
    mkdirSync(join(root, "web", ".git"));
    writeFileSync(join(root, "web", ".git", "config"), "[core]");
    server = http.createServer(createStaticFilesHandler(join(root, "web")));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(root, { recursive: true, force: true });
  });

  /** A raw request, so the path reaches the server exactly as written (fetch would normalise "..") */
  function get(
    path: string,
    method = "GET",
    headers: Record<string, string> = {},
  ): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
    return new Promise((resolve, reject) => {
      const request = http.request(`${base}${path}`, { method, path, headers }, (response) => {
        let body = "";
        response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
      });
      request.on("error", reject);
      request.end();
    });
  }

  it("serves index.html at / and the bundle with its type, no-cache and a same-origin CSP", async () => {
    const index = await get("/");
    expect(index.status).toBe(200);
    expect(index.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(index.headers["content-security-policy"]).toContain("connect-src 'self'");
    expect(index.body).toContain("<title>console</title>");
    const app = await get("/app.js?v=1");
    expect([app.status, app.headers["content-type"], app.headers["cache-control"]]).toEqual([
      200,
      "text/javascript; charset=utf-8",
      "no-cache",
    ]);
    // esbuild's linked licence file is text, not a download.
    const legal = await get("/app.js.LEGAL.txt");
    expect([legal.status, legal.headers["content-type"]]).toEqual([200, "text/plain; charset=utf-8"]);
  });

  it("lets a browser revalidate: an ETag, 304 while the file is unchanged, the new file once rebuilt", async () => {
    const first = await get("/app.js");
    const etag = first.headers.etag;
    expect(etag).toMatch(/^"[0-9a-f]{16,}"$/);
    const unchanged = await get("/app.js", "GET", { "if-none-match": etag! });
    expect([unchanged.status, unchanged.body, unchanged.headers["cache-control"]]).toEqual([304, "", "no-cache"]);
    expect(unchanged.headers.etag).toBe(etag);
    writeFileSync(join(root, "web", "app.js"), "export const rebuilt = true;");
    const rebuilt = await get("/app.js", "GET", { "if-none-match": etag! });
    expect([rebuilt.status, rebuilt.body]).toEqual([200, "export const rebuilt = true;"]);
    expect(rebuilt.headers.etag).not.toBe(etag);
    writeFileSync(join(root, "web", "app.js"), "export {};");
  });

  it("refuses paths outside its directory, missing files and other methods", async () => {
    expect((await get("/../secret.txt")).status).toBe(404);
    expect((await get("/%2e%2e/secret.txt")).status).toBe(404);
    expect((await get("/%2e%2e%2fsecret.txt")).status).toBe(404);
    expect((await get("/missing.js")).status).toBe(404);
    expect((await get("/%E0%A4%A")).status).toBe(404);
    expect((await get("/", "POST")).status).toBe(405);
    // Nothing outside by a symbolic link either; a link that stays inside is a file like any other.
    expect((await get("/linked.txt")).status).toBe(404);
    expect((await get("/up/secret.txt")).status).toBe(404);
    expect(await get("/alias.js")).toMatchObject({ status: 200, body: "export {};" });
    // No dotfiles: they are never part of a bundle, and may hold secrets.
    expect((await get("/.env")).status).toBe(404);
    expect((await get("/.git/config")).status).toBe(404);
    expect((await get("/%2eenv")).status).toBe(404);
    const head = await get("/app.js", "HEAD");
    expect([head.status, head.body]).toEqual([200, ""]);
  });

  it("sends nosniff and the CSP on every answer, refusals and revalidations too", async () => {
    const etag = (await get("/app.js")).headers.etag ?? "";
    const answers = [await get("/missing.js"), await get("/", "POST"), await get("/app.js", "GET", { "if-none-match": etag })];
    expect(answers.map((answer) => answer.status)).toEqual([404, 405, 304]);
    for (const answer of answers) {
      expect(answer.headers["x-content-type-options"]).toBe("nosniff");
      expect(answer.headers["content-security-policy"]).toContain("frame-ancestors 'none'");
    }
  });
});

describe("npm start's arguments", () => {
  it("puts the console on --port and gRPC on --grpc-port, with ./data and the bundle by default", () => {
    expect(backendArgs([], "/b/")).toEqual(["--http1-port", "8080", "--port", "7080", "--data-dir", "data", "--console", "/b/"]);
    expect(backendArgs(["--port", "9000", "--grpc-port=9001", "--openai-keyless"], "/b/")).toEqual([
      "--http1-port",
      "9000",
      "--port=9001",
      "--openai-keyless",
      "--data-dir",
      "data",
      "--console",
      "/b/",
    ]);
  });
});
