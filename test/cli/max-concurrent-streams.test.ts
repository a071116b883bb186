import { afterAll, describe, expect, it } from "vitest";
import { startCli, type CliProcess } from "../support/cli-process.js";
import { advertisedStreamLimit } from "../support/http2-settings.js";

/** `--max-concurrent-streams` (serve and backend): what each HTTP/2 connection is told, and bad values. */

const processes: CliProcess[] = [];

afterAll(() => {
  for (const cli of processes) cli.kill();
});

describe("--max-concurrent-streams", () => {
  it("sets the limit serve and backend advertise", async () => {
    for (const command of ["serve", "backend"]) {
      const cli = startCli([command, "--port", "0", "--max-concurrent-streams", "17"]);
      processes.push(cli);
      const { h2c } = await cli.listening;
      expect(await advertisedStreamLimit(`http://${h2c}`), command).toBe(17);
    }
  }, 120_000);

  it("refuses a value that is not 16 to 2^31-1, before starting", async () => {
    // Under 16 a Backend's own two streams per runtime would leave its calls waiting.
    const values = ["15", "2147483648", "1.5"];
    const clis = values.map((value) => startCli(["serve", "--port", "0", "--max-concurrent-streams", value]));
    processes.push(...clis);
    for (const [index, cli] of clis.entries()) {
      expect(await cli.exited, values[index]).toEqual({ code: 2, signal: null });
      expect(cli.stderr()).toBe("worker-runtime: --max-concurrent-streams must be a whole number from 16 to 2147483647\n");
    }
  }, 120_000);
});
