import { describe, expect, it } from "vitest";
import { runClient } from "./client/client-support.js";

/**
 * `util.parseArgs` refuses a string flag's value that starts with a dash with its own advice
 * ("argument is ambiguous ... use '--tail=-XYZ'"): the CLI says what is wrong in its own words.
 * The commands end at parsing, so no server is needed.
 */
describe("a flag given a negative value, or no value before the next flag", () => {
  it("a client command names the flag and the value", async () => {
    const negative = await runClient(["transcript", "w-1", "--tail", "-1"]);
    expect(negative).toMatchObject({ code: 2, stdout: "", stderr: "worker-runtime: --tail must not be negative (got -1)\n" });
    const missing = await runClient(["transcript", "w-1", "--tail", "--after", "3"]);
    expect(missing).toMatchObject({ code: 2, stderr: "worker-runtime: --tail needs a value (the next argument, --after, is a flag)\n" });
    // The flag given twice: the occurrence parseArgs refused, not the first.
    const again = await runClient(["transcript", "w-1", "--tail", "5", "--tail", "-1"]);
    expect(again).toMatchObject({ code: 2, stderr: "worker-runtime: --tail must not be negative (got -1)\n" });
  });

  it("serve names the flag and the value before it starts anything", async () => {
    const negative = await runClient(["serve", "--port", "0", "--shutdown-grace-ms", "-5"]);
    expect(negative).toMatchObject({ code: 2, stdout: "", stderr: "worker-runtime: --shutdown-grace-ms must not be negative (got -5)\n" });
  });
});
