/**
 * Guards a continued answer against repeating itself. After a cut stream the
 * model is asked to continue from the text already committed; most models
 * do, but some restart the answer from the top. The filter holds back the
 * continuation's first deltas while they could still be a restart of
 * `alreadySaid`, then drops the repeated part (restart) or releases them
 * unchanged (true continuation), so the transcript never holds the same
 * text twice.
 */
export interface TextFilter {
  /** Returns the part of `delta` to emit now (may be empty while undecided). */
  push(delta: string): string;
  /**
   * Ends the stream. A finished stream releases what is still held. A cut or
   * cancelled one drops it: held text is always a prefix of `alreadySaid`
   * (a restart that stopped short), so releasing it would commit the same
   * text twice.
   */
  flush(ending: "finished" | "interrupted"): string;
}

/** A filter that passes everything through. */
export const passThrough: TextFilter = { push: (delta) => delta, flush: () => "" };

/** A filter for a continuation of `alreadySaid`. */
export function continuationFilter(alreadySaid: string): TextFilter {
  let held = "";
  let decided = alreadySaid === "";
  return {
    push(delta) {
      if (decided) return delta;
      held += delta;
      if (alreadySaid.startsWith(held) && held.length < alreadySaid.length) return "";
      decided = true;
      const out = held.startsWith(alreadySaid) ? held.slice(alreadySaid.length) : held;
      held = "";
      return out;
    },
    flush(ending) {
      const out = ending === "finished" ? held : "";
      held = "";
      decided = true;
      return out;
    },
  };
}
