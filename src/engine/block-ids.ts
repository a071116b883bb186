/**
 * Ids of in-flight blocks within one run. Each model turn, continuation and
 * tool call streams into a fresh block, so watchers never append a new
 * attempt's deltas to an older block; the run id prefix keeps them unique
 * across runs.
 */
export interface BlockIds {
  next(kind: "text" | "reasoning" | "tool"): string;
}

/** Block ids for the run `runId`. */
export function createBlockIds(runId: string): BlockIds {
  let counter = 0;
  return { next: (kind) => `${runId}.${++counter}.${kind}` };
}
