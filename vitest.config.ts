import { defineConfig } from "vitest/config";

/**
 * Tests that take minutes rather than seconds: the SIGKILL crash loop (32
 * kills of a child runtime) and the package check (build, pack, install
 * without dev dependencies, start the built CLI) and the console in headless
 * Chromium. They run in CI in their own
 * project so `npm run test:fast` stays under a minute for day-to-day work.
 */
const SLOW = ["test/store/crash.test.ts", "test/package/**/*.test.ts", "test/console/console.test.ts"];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real servers and child processes; two cores.
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: "fast", include: ["test/**/*.test.ts"], exclude: SLOW } },
      { extends: true, test: { name: "slow", include: SLOW } },
    ],
  },
});
