/**
 * The line a server process prints once it listens, which operators and
 * scripts read for the addresses: `h2c=` (plain HTTP/2) or `https=` for the
 * main port, then the --http1-port listener as what it is: `http1=` in plain
 * text, `https-browser=` under TLS, where it speaks HTTP/2 as well and
 * `http1=` sent people to http:// (and to one protocol) for an https port.
 */
export function listeningLine(tls: boolean, main: string, browser: string | undefined, runtimeId: string): string {
  const second = browser === undefined ? "" : ` ${tls ? "https-browser" : "http1"}=${browser}`;
  return `worker-runtime listening ${tls ? "https" : "h2c"}=${main}${second} runtime_id=${runtimeId}\n`;
}
