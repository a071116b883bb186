import { open, readdir, stat, unlink } from "node:fs/promises";
import * as path from "node:path";
import { isTempName } from "./disk.js";
import type { FileStoreStats } from "./file-store-stats.js";
import { OffsetList } from "./offset-list.js";
import { indexName, isNotFound, logName, truncateSegment, type LogState, type Segment } from "./segment.js";
import { encodeSegmentIndex, readSegmentIndexCount } from "./segment-index.js";
import { readOffsets } from "./segment-reader.js";
import { type SegmentScan, scanSegment } from "./segment-scan.js";
import type { LogProblem, SegmentedLogInit } from "./segmented-log-init.js";

/**
 * Recovers a log into `state` (empty on entry): sealed segments are checked
 * against their index, the active one is scanned record by record; a torn
 * tail is truncated and reported, corruption is reported and leaves the log
 * read-only (`state.damage`).
 */
export async function recoverSegments(init: SegmentedLogInit, state: LogState): Promise<LogProblem[]> {
  const { disk, dir, stats } = init;
  let names: string[];
  try {
    names = await readdir(disk.abs(dir));
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
  const problems: LogProblem[] = [];
  const logs = new Set(names.filter((n) => /^\d{20}\.log$/.test(n)));
  for (const name of names) {
    const orphanIndex = name.endsWith(".idx") && !logs.has(name.replace(/\.idx$/, ".log"));
    // Cleanup only (nothing reads these), so a failure does not stop the open.
    if (isTempName(name) || orphanIndex) await unlink(disk.abs(path.join(dir, name))).catch(() => undefined);
  }
  const firsts = [...logs].map((n) => BigInt(n.slice(0, 20))).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [i, firstSeq] of firsts.entries()) {
    const rel = logName(dir, firstSeq);
    const previous = state.segments.at(-1);
    if (previous && previous.firstSeq + BigInt(previous.count) !== firstSeq) {
      problems.push({ kind: "corrupt", file: rel, detail: `segment does not continue the previous one` });
      state.damage = `${rel}: segment does not continue the previous one`;
      state.cutByDamage = true;
      break;
    }
    const isLast = i === firsts.length - 1;
    // A sealed segment needs its size to check its index; the active one is scanned, and the scan's own fstat
    // gives it (one file operation less per log at start-up, where thousands of workers each open three).
    const sealedSize = isLast ? undefined : (await stat(disk.abs(rel))).size;
    const count = sealedSize === undefined ? undefined : await readSegmentIndexCount(disk.abs(indexName(dir, firstSeq)), sealedSize, stats);
    if (sealedSize !== undefined && count !== undefined) {
      state.segments.push({ firstSeq, count, size: sealedSize });
      continue;
    }
    const { scan, size } = await scanFile(disk.abs(rel), firstSeq, stats);
    const segment: Segment = { firstSeq, count: scan.offsets.length, size: scan.goodEnd, offsets: scan.offsets };
    state.segments.push(segment);
    if (scan.damage?.kind === "corrupt" || (scan.damage && !isLast)) {
      const detail = `${scan.damage.reason} at byte ${scan.damage.offset}`;
      problems.push({ kind: "corrupt", file: rel, detail });
      state.damage = `${rel}: ${detail}`;
      state.cutByDamage = true;
      break;
    }
    if (scan.damage) {
      await truncateSegment(disk, rel, scan.goodEnd);
      const detail = `${scan.damage.reason} at byte ${scan.damage.offset}; ${size - scan.goodEnd} bytes dropped`;
      problems.push({ kind: "torn", file: rel, detail });
    }
    if (!isLast) {
      await disk.replaceFile(indexName(dir, firstSeq), encodeSegmentIndex(scan.offsets.view(), scan.goodEnd));
      delete segment.offsets;
    }
  }
  const last = state.segments.at(-1);
  if (last) {
    last.offsets ??= OffsetList.from(await readOffsets(init, last, 0, last.count).then((o) => o.slice(0, last.count)));
    state.durableSeq = last.firstSeq + BigInt(last.count) - 1n;
    state.activeCreated = true;
  }
  return problems;
}

async function scanFile(absPath: string, firstSeq: bigint, stats: FileStoreStats): Promise<{ scan: SegmentScan; size: number }> {
  const fh = await open(absPath, "r");
  try {
    const { size } = await fh.stat();
    return { scan: await scanSegment(fh, size, firstSeq, stats), size };
  } finally {
    await fh.close();
  }
}
