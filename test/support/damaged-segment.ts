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
