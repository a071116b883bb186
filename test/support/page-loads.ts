import type { Browser, Page } from "playwright-core";

/**
 * How long a console test waits for a page to load (page.goto, page.reload):
 * the console is three files from a server on loopback, so seconds even on
 * a loaded machine. Playwright's default, 30 s, made a hang cost 30 s per
 * call. A test that means to wait longer passes its own `timeout`.
 */
export const PAGE_LOAD_TIMEOUT_MS = 10_000;

/**
 * Gives every page the browser opens (through newPage or a context of its
 * own) the {@link PAGE_LOAD_TIMEOUT_MS} bound, and makes a goto or reload
 * that fails say which page did not load, within what bound, waiting for
 * what, instead of Playwright's bare "Timeout 30000ms exceeded".
 */
export function boundPageLoads(browser: Browser): void {
  const newContext = browser.newContext.bind(browser);
  browser.newContext = async (options) => {
    const context = await newContext(options);
    context.setDefaultNavigationTimeout(PAGE_LOAD_TIMEOUT_MS);
    const newPage = context.newPage.bind(context);
    context.newPage = async () => explainLoads(await newPage());
    return context;
  };
}

/** Wraps the page's goto and reload so their failures name the page. */
function explainLoads(page: Page): Page {
  const goto = page.goto.bind(page);
  page.goto = async (url, options) => {
    try {
      return await goto(url, options);
    } catch (error) {
      throw notLoaded(url, options, error);
    }
  };
  const reload = page.reload.bind(page);
  page.reload = async (options) => {
    const url = page.url();
    try {
      return await reload(options);
    } catch (error) {
      throw notLoaded(`${url} (reloaded)`, options, error);
    }
  };
  return page;
}

function notLoaded(url: string, options: { timeout?: number; waitUntil?: string } | undefined, error: unknown): Error {
  const timeout = options?.timeout ?? PAGE_LOAD_TIMEOUT_MS;
  const waitUntil = options?.waitUntil ?? "load";
  const reason = error instanceof Error ? (error.message.split("\n")[0] ?? error.message) : String(error);
  return new Error(`the page ${url} did not load within ${timeout} ms (waiting for "${waitUntil}"): ${reason}`, {
    cause: error,
  });
}
