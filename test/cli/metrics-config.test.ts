import { describe, expect, it } from "vitest";
import { metricsListenFromFlags, MetricsConfigError, processMetricsFromFlags } from "../../src/cli/metrics-config.js";

describe("--metrics-port and --metrics-host", () => {
  it("are off without a port: no registry is made", async () => {
    expect(metricsListenFromFlags({})).toBeUndefined();
    expect(await processMetricsFromFlags({})).toBeUndefined();
  });

  it("listen on loopback by default, or on the host given", async () => {
    expect(metricsListenFromFlags({ "metrics-port": "9464" })).toEqual({ host: "127.0.0.1", port: 9464 });
    expect(metricsListenFromFlags({ "metrics-port": "0", "metrics-host": "0.0.0.0" })).toEqual({ host: "0.0.0.0", port: 0 });
    expect(metricsListenFromFlags({ "metrics-port": "65535", "metrics-host": "::1" })).toEqual({ host: "::1", port: 65535 });
    expect((await processMetricsFromFlags({ "metrics-port": "0" }))?.listen).toEqual({ host: "127.0.0.1", port: 0 });
  });

  it.each([
    [{ "metrics-port": "" }, "--metrics-port must be a port number 0-65535"],
    [{ "metrics-port": "abc" }, "--metrics-port must be a port number 0-65535"],
    [{ "metrics-port": "-1" }, "--metrics-port must be a port number 0-65535"],
    [{ "metrics-port": "65536" }, "--metrics-port must be a port number 0-65535"],
    [{ "metrics-port": "80.5" }, "--metrics-port must be a port number 0-65535"],
    [{ "metrics-port": "1e3" }, "--metrics-port must be a port number 0-65535"],
    [{ "metrics-host": "127.0.0.1" }, "--metrics-host needs --metrics-port"],
    [{ "metrics-port": "9464", "metrics-host": "" }, "--metrics-host must be an IP address or localhost"],
    [{ "metrics-port": "9464", "metrics-host": "metrics.example" }, "--metrics-host must be an IP address or localhost"],
  ])("refuses %o with a MetricsConfigError", (flags, message) => {
    expect(() => metricsListenFromFlags(flags)).toThrow(new MetricsConfigError(message));
  });
});
