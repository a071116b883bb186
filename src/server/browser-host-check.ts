import type http from "node:http";
import type http2 from "node:http2";
import { isLoopback } from "./server.js";

/**
 * Why a request to a server without a token is refused, or undefined when it
 * may be answered. Such a server listens on loopback only, and "only local
 * programs can connect" is all that protects it; DNS rebinding breaks that
 * for browsers: a page on attacker.example re-points its own name at
 * 127.0.0.1, and the browser sends the page's requests here with
 * `Host: attacker.example:PORT` and lets the page read the answers as
 * same-origin. So the Host (and the Origin, when a browser sends one) must
 * name this machine's loopback: 127.x, [::1], localhost or *.localhost
 * (which browsers resolve to loopback themselves), or one of `allowedHosts`
 * (--allow-host, for a port forward that keeps its own name). The Origin is
 * checked on what can change something (every RPC is a POST); a foreign
 * page's GET of a file gets no CORS headers, so it cannot read the answer.
 * An HTTP/2 request (a browser over TLS) names its host in `:authority`, and
 * may carry a Host as well: both must be local (RFC 9113 §8.3.1 lets a server
 * refuse a Host that differs from `:authority`).
 */
export function refusedBrowserHost(
  request: http.IncomingMessage | http2.Http2ServerRequest,
  allowedHosts: ReadonlySet<string>,
): string | undefined {
  // HTTP/1.0 without Host, HTTP/2 without `:authority`: not a browser.
  for (const [name, host] of [
    [":authority", request.headers[":authority"]],
    ["Host", request.headers.host],
  ] as const) {
    if (host !== undefined && !isLocalName(hostnameOf(`http://${host}`), allowedHosts)) return `${name} "${host}"`;
  }
  const origin = request.method === "GET" || request.method === "HEAD" ? undefined : request.headers.origin;
  if (origin !== undefined && !isLocalName(hostnameOf(origin), allowedHosts)) return `Origin "${origin}"`;
  return undefined;
}

/** Answers a refused request: 403 and what to do about it. */
export function refuseBrowserHost(response: http.ServerResponse | http2.Http2ServerResponse, what: string): void {
  response.writeHead(403, { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" });
  response.end(
    `refused: ${what} is not a loopback name, and this server has no token (DNS rebinding protection); ` +
      "open it as 127.0.0.1:PORT or localhost:PORT, or name the host with --allow-host\n",
  );
}

/** The lower-case host name of a URL (IPv6 in brackets), or undefined when it is not one. */
function hostnameOf(url: string): string | undefined {
  try {
    return new URL(url).hostname.toLowerCase() || undefined;
  } catch {
    return undefined;
  }
}

function isLocalName(hostname: string | undefined, allowedHosts: ReadonlySet<string>): boolean {
  if (hostname === undefined) return false;
  return isLoopback(hostname) || hostname.endsWith(".localhost") || allowedHosts.has(hostname);
}
