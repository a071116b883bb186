/**
 * The package's version, reported by GetRuntime and `worker-runtime
 * --version`. A constant rather than a read of package.json, so that the
 * core stays free of file I/O; test/cli/client/command-line-shape.test.ts keeps the two
 * equal, so a release that bumps one and not the other fails CI.
 */
export const RUNTIME_VERSION = "0.1.0";
