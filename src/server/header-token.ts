/**
 * Whether a bearer token can travel in an HTTP header as it is: visible
 * ASCII only. A line break, a control or a non-ASCII character (a token
 * file saved with two lines, or in another encoding) would make the HTTP
 * layer refuse every call and echo the value in its error, so the client
 * and the servers check it at start, with an error that does not quote it.
 */
export function isHeaderSafeToken(token: string): boolean {
  return /^[\x21-\x7e]+$/.test(token);
}
