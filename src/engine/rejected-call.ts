/**
 * The tool result a rejected call gets: what the model reads, and how the
 * console tells a rejected call from a failed one (the transcript has no
 * field for it). Plain TypeScript, no Node modules: web/ imports it too.
 */
export const REJECTED_CALL_OUTPUT = "The user rejected this tool call, so it did not run.";

/** The rejected call's result, with the reason the user gave, if any. */
export function rejectedCallOutput(reason: string): string {
  const given = reason.trim();
  return `${REJECTED_CALL_OUTPUT}${given ? ` Reason: ${given}` : " No reason was given."}`;
}
