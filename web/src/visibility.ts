/**
 * A chat's watch holds one HTTP/1.1 connection for as long as it is open,
 * and a browser opens at most six to one origin, shared by all its tabs: with
 * six chats open, a seventh tab could not even load the page. So a hidden tab
 * gives its watch up and resumes it from its cursor when shown again, which
 * loses nothing: the server replays every durable event after the cursor,
 * and the snapshot holds the in-flight text.
 */

/** Resolves once the page is visible: at once if it is, or when `signal` aborts. */
export function whenVisible(signal: AbortSignal): Promise<void> {
  if (!document.hidden || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      if (document.hidden && !signal.aborted) return;
      document.removeEventListener("visibilitychange", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    document.addEventListener("visibilitychange", done);
    signal.addEventListener("abort", done);
  });
}

/** A signal that aborts when `parent` does or when the page is hidden; `dispose` stops watching the page. */
export function untilHidden(parent: AbortSignal): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const check = (): void => {
    if (parent.aborted || document.hidden) controller.abort();
  };
  document.addEventListener("visibilitychange", check);
  parent.addEventListener("abort", check);
  check();
  return {
    signal: controller.signal,
    dispose: () => {
      document.removeEventListener("visibilitychange", check);
      parent.removeEventListener("abort", check);
    },
  };
}
