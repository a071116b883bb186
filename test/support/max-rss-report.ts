import { writeFileSync } from "node:fs";

/**
 * Preloaded into a child process (`node --import tsx --import
 * ./test/support/max-rss-report.ts ...`): when it exits, writes its peak
 * resident set size in KiB (process.resourceUsage().maxRSS) to the file
 * named by {@link MAX_RSS_FILE_VARIABLE}, so a test can check that a
 * command stayed within a memory bound without timing or sampling it.
 */
export const MAX_RSS_FILE_VARIABLE = "WR_TEST_MAX_RSS_FILE";

const file = process.env[MAX_RSS_FILE_VARIABLE];
if (file !== undefined && file !== "") {
  process.on("exit", () => writeFileSync(file, String(process.resourceUsage().maxRSS)));
}
