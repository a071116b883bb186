import type { Interceptor } from "@connectrpc/connect";

/** Where the tab keeps the Backend's token: sessionStorage, so it ends with the tab and never enters the URL or history. */
const STORAGE_KEY = "worker-runtime.access-token";

/** The token this tab was given, if any. */
export function accessToken(): string | undefined {
  try {
    return sessionStorage.getItem(STORAGE_KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

/** Keeps `token` for this tab (empty forgets it). */
export function setAccessToken(token: string): void {
  try {
    if (token) sessionStorage.setItem(STORAGE_KEY, token);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage refused (privacy mode): the token is not kept, and the form asks again.
  }
}

/**
 * Sends the tab's token as `authorization: Bearer …` on every call. A Backend
 * started with --token-file (as on Kubernetes) refuses calls without it;
 * one on loopback without a token ignores the header.
 */
export const accessTokenInterceptor: Interceptor = (next) => (request) => {
  const token = accessToken();
  if (token) request.header.set("authorization", `Bearer ${token}`);
  return next(request);
};
