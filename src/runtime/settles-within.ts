import { MAX_TIMER_MS } from "./limit-rules.js";

/**
 * Whether `work` settled within `ms` (false once they pass); its rejection
 * within them is thrown. How the runtime bounds its waits on the store (a
 * disk that stops answering): at close (runtime-shutdown.ts) and for a
 * worker's delete (worker-deletes.ts). `work` itself goes on; the caller
 * decides what its late answer means. A bound past what one Node timer
 * holds (close's is the sum of two limits, each up to it) waits that
 * longest timer: Node fires a longer one at once.
 */
export async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.min(MAX_TIMER_MS, Math.max(0, ms)));
  });
  try {
    return await Promise.race([work.then(() => true), expired]);
  } finally {
    clearTimeout(timer);
  }
}
