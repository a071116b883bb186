import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../support/cli-process.js";

/**
 * Tracing is off by default and then costs nothing: a process with no
 * OTEL_* variables, having loaded everything `serve` and `backend` load,
 * never loads the OpenTelemetry SDK. Switched on by the standard variables,
 * it loads it; a bad value stops the process with a usage error.
 */

const run = promisify(execFile);
const PROBE = "test/telemetry/tracing/fixtures/start-tracing-probe.ts";

/** This process's environment without any OTEL_* variable, plus `extra`. */
function envWith(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("OTEL_")));
  return { ...env, ...extra };
}

async function probe(extra: Record<string, string>): Promise<{ enabled: boolean; sdkLoaded: boolean }> {
  const { stdout } = await run(process.execPath, ["--import", "tsx", PROBE], { cwd: REPO_ROOT, env: envWith(extra), timeout: 30_000 });
  return JSON.parse(stdout.trim()) as { enabled: boolean; sdkLoaded: boolean };
}

describe("starting tracing from the environment", () => {
  it("loads no SDK without OTEL_* variables", async () => {
    expect(await probe({})).toEqual({ enabled: false, sdkLoaded: false });
  });

  it("loads no SDK when OTEL_SDK_DISABLED wins over an exporter", async () => {
    expect(await probe({ OTEL_SDK_DISABLED: "true", OTEL_TRACES_EXPORTER: "otlp" })).toEqual({ enabled: false, sdkLoaded: false });
  });

  it("loads the SDK and the OTLP exporter when an endpoint is set", async () => {
    // Nothing is traced, so nothing is sent to the unreachable endpoint.
    expect(await probe({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" })).toEqual({ enabled: true, sdkLoaded: true });
  });

  it("refuses a bad value with a usage error naming the variable", async () => {
    const failed = await probe({ OTEL_TRACES_EXPORTER: "zipkin" }).then(
      () => undefined,
      (error: unknown) => error as { stderr: string },
    );
    expect(failed?.stderr).toContain(`OTEL_TRACES_EXPORTER "zipkin" is not supported`);
    expect(failed?.stderr).toContain("UsageError");
  });
});
