import { defineConfig } from "vitest/config";

/**
 * Tests that take tens of seconds to minutes: the SIGKILL crash loop (32
 * kills of a child runtime), the package check (build, pack, install without
 * dev dependencies, start the built CLI), the console in headless Chromium,
 * and the suites that start many real processes (the CLI, one process per
 * call; the Backend over runtime processes; approvals across
 * SIGKILLs; the container's runtime stage rebuilt and drained on SIGTERM). CI runs both projects on Node 20 and 24; the fast one alone
 * (`npm run test:fast`) is for day-to-day work.
 */
const SLOW = [
  "test/store/crash.test.ts",
  "test/cli/max-concurrent-streams.test.ts",
  "test/store/data-dir-lock-race.test.ts",
  "test/store/crash-retention.test.ts",
  "test/package/**/*.test.ts",
  "test/console/console.test.ts",
  "test/console/console-tls.test.ts",
  "test/console/start.test.ts",
  "test/console/live-view.test.ts",
  "test/console/streaming-markdown.test.ts",
  "test/console/markdown.test.ts",
  "test/console/worker-list.test.ts",
  "test/console/failed-worker.test.ts",
  "test/console/sidebar-follows-chat.test.ts",
  "test/console/header-after-cancel.test.ts",
  "test/console/keyboard.test.ts",
  "test/console/late-busy-refusal.test.ts",
  "test/console/chat-header-layout.test.ts",
  "test/cli/client/**/*.test.ts",
  "test/backend/backend.test.ts",
  "test/backend/bundles.test.ts",
  "test/cli/durable-approval.test.ts",
  "test/cli/serve.test.ts",
  "test/cli/data-dir.test.ts",
  "test/cli/shutdown.test.ts",
  "test/cli/log-scan.test.ts",
  "test/deploy/container.test.ts",
  "test/cli/metrics-cli.test.ts",
  "test/cli/operator-timeouts.test.ts",
  "test/store/interrupted-run-duration.test.ts",
];

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
