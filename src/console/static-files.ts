import { createHash } from "node:crypto";
import { readFile, realpath, stat } from "node:fs/promises";
import type http from "node:http";
import type http2 from "node:http2";
import { extname, join, normalize, resolve, sep } from "node:path";

/** A handler for the requests no RPC route matches (the server's `fallback`). */
export type StaticFilesHandler = (
  request: http.IncomingMessage | http2.Http2ServerRequest,
  response: http.ServerResponse | http2.Http2ServerResponse,
) => void;

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".map": "application/json",
  ".txt": "text/plain; charset=utf-8",
};

/**
 * The console's page may only load its own bundle and talk to its own
 * origin: rendered markdown is sanitised, and this stops whatever slips
 * through from loading scripts or sending data elsewhere.
 */
const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** On every answer, refusals included: a browser then neither sniffs a body into another type nor frames it. */
const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "content-security-policy": CONTENT_SECURITY_POLICY,
} as const;

/**
 * Serves the console's built files from `dir` (the bundle esbuild writes):
 * GET and HEAD only, "/" is index.html, nothing outside `dir` (by `..` or by
 * a symbolic link), no dotfiles (`.env`, `.git/`: never part of a bundle,
 * maybe secret), no directory listings. Files are read per request, so a
 * rebuilt bundle is served without a restart, and sent with `no-cache` and a
 * content ETag, so a browser revalidates (304 while unchanged).
 */
export function createStaticFilesHandler(dir: string): StaticFilesHandler {
  const root = resolve(dir);
  // The real root once (it may itself be a link, e.g. a deployed release), for the per-file check.
  const realRoot = realpath(root).catch(() => root);
  return (request, response) => {
    const method = request.method ?? "GET";
    if (method !== "GET" && method !== "HEAD") {
      response.writeHead(405, { allow: "GET, HEAD", ...SECURITY_HEADERS });
      response.end();
      return;
    }
    const file = fileFor(root, request.url ?? "/");
    const ifNoneMatch = request.headers["if-none-match"];
    void realFileFor(file, realRoot).then((real) => send(real, method === "HEAD", ifNoneMatch, response));
  };
}

/** The file a URL path names inside `root`, or undefined when it points outside. */
function fileFor(root: string, url: string): string | undefined {
  let path: string;
  try {
    path = decodeURIComponent(url.split("?", 2)[0] ?? "/");
  } catch {
    return undefined;
  }
  if (path.includes("\0")) return undefined;
  if (path.endsWith("/")) path += "index.html";
  const file = normalize(join(root, path));
  if (!file.startsWith(root + sep)) return undefined;
  return file
    .slice(root.length)
    .split(sep)
    .some((segment) => segment.startsWith("."))
    ? undefined
    : file;
}

/** `file` with its links resolved, or undefined when it is missing or resolves outside the real root. */
async function realFileFor(file: string | undefined, realRoot: Promise<string>): Promise<string | undefined> {
  if (file === undefined) return undefined;
  const [real, rootDir] = await Promise.all([realpath(file).catch(() => undefined), realRoot]);
  return real?.startsWith(rootDir + sep) ? real : undefined;
}

async function send(file: string | undefined, headOnly: boolean, ifNoneMatch: string | undefined, response: StaticResponse): Promise<void> {
  const body = file && (await stat(file).catch(() => undefined))?.isFile() ? await readFile(file).catch(() => undefined) : undefined;
  if (!file || !body) {
    response.writeHead(404, { "content-type": "text/plain; charset=utf-8", ...SECURITY_HEADERS });
    response.end("not found\n");
    return;
  }
  // "no-cache" means "revalidate", which needs a validator: without one every load fetched the whole bundle again.
  const etag = `"${createHash("sha256").update(body).digest("hex").slice(0, 32)}"`;
  if (ifNoneMatch?.split(",").some((tag) => tag.trim().replace(/^W\//, "") === etag)) {
    response.writeHead(304, { etag, "cache-control": "no-cache", ...SECURITY_HEADERS });
    response.end();
    return;
  }
  response.writeHead(200, {
    "content-type": CONTENT_TYPES[extname(file)] ?? "application/octet-stream",
    "content-length": String(body.length),
    "cache-control": "no-cache",
    etag,
    ...SECURITY_HEADERS,
  });
  if (headOnly) response.end();
  else response.end(body);
}

type StaticResponse = Parameters<StaticFilesHandler>[1];
