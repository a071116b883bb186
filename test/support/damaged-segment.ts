import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";

/**
 * Flips one byte inside a record of a worker's first transcript segment
 * (`workerDir` is `<data dir>/workers/<worker id>`). A sealed segment is
 * trusted at open, so the damage is found later, by the first read of it:
 * how the quarantine tests make a worker's stored history unreadable while
 * it is served. The worker needs a history over several segments. Answers
 * the segment's path (the operator's log names it).
 */
export async function damageFirstSegment(workerDir: string): Promise<string> {
  const segment = path.join(workerDir, "transcript", "00000000000000000001.log");
  const bytes = await readFile(segment);
  bytes[40] = (bytes[40] ?? 0) ^ 0x5a;
  await writeFile(segment, bytes);
  return segment;
}

/**
 * Flips one byte in the middle of a worker's transcript when it is all in
 * one (active) segment, between records that later ones follow: the open
 * that comes next scans it, finds acknowledged records past the damage and
 * quarantines the worker, its readable transcript cut at the last record
 * before the damage. How the transcript-cut tests make a worker whose
 * history reads short. Answers the segment's path.
 */
export async function damageActiveSegmentMiddle(workerDir: string): Promise<string> {
  const segment = path.join(workerDir, "transcript", "00000000000000000001.log");
  const bytes = await readFile(segment);
  const at = Math.floor(bytes.length / 2);
  bytes[at] = (bytes[at] ?? 0) ^ 0x5a;
  await writeFile(segment, bytes);
  return segment;
}
