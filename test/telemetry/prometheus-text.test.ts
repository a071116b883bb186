import { describe, expect, it } from "vitest";
import { parsePrometheusText, PrometheusTextError, sumSamples } from "../support/prometheus-text.js";

const VALID = `# HELP runs_total Runs that ended.
# TYPE runs_total counter
runs_total{status="completed",stop_reason="end_turn"} 3
runs_total{status="failed",stop_reason="error"} 1

# a plain comment
# HELP lag Event loop lag, "quoted" and escaped \\\\ and \\n.
# TYPE lag gauge
lag NaN
other_untyped -Inf 1700000000000
# TYPE d histogram
d_bucket{le="0.1",path="a\\"b\\\\c\\nd"} 1
d_bucket{le="1",path="a\\"b\\\\c\\nd"} 2
d_bucket{le="+Inf",path="a\\"b\\\\c\\nd"} 2
d_sum{path="a\\"b\\\\c\\nd"} 0.7
d_count{path="a\\"b\\\\c\\nd"} 2
`;

describe("the strict Prometheus text parser (test support)", () => {
  it("parses families, types, labels with escapes, special values and histograms", () => {
    const families = parsePrometheusText(VALID);
    expect([...families.keys()]).toEqual(["runs_total", "lag", "other_untyped", "d"]);
    expect(families.get("runs_total")?.type).toBe("counter");
    expect(families.get("lag")?.help).toBe('Event loop lag, "quoted" and escaped \\ and \n.');
    expect(families.get("lag")?.samples[0]?.value).toBeNaN();
    expect(families.get("other_untyped")?.samples[0]?.value).toBe(Number.NEGATIVE_INFINITY);
    expect(families.get("d")?.samples[0]?.labels).toEqual({ le: "0.1", path: 'a"b\\c\nd' });
    expect(sumSamples(families, "runs_total")).toBe(4);
    expect(sumSamples(families, "runs_total", { status: "failed" })).toBe(1);
    expect(sumSamples(families, "missing")).toBe(0);
  });

  it.each([
    ["a value that is not a number", "x 1O\n"],
    ["a missing value", "x\n"],
    ["two spaces before the value", "x  1\n"],
    ["a bad metric name", "1x 1\n"],
    ["a label value without quotes", "x{a=b} 1\n"],
    ["an unterminated label value", 'x{a="b} 1\n'],
    ["an unknown escape", 'x{a="\\t"} 1\n'],
    ["a duplicate label", 'x{a="1",a="2"} 1\n'],
    ["a reserved label name", 'x{__name__="y"} 1\n'],
    ["a missing comma between labels", 'x{a="1" b="2"} 1\n'],
    ["a duplicate series", 'x{a="1"} 1\nx{a="1"} 2\n'],
    ["an unknown TYPE", "# TYPE x countr\nx 1\n"],
    ["a TYPE after samples", "x 1\n# TYPE x counter\n"],
    ["a second HELP", "# HELP x a\n# HELP x b\nx 1\n"],
    ["a family split in two", 'x 1\ny 1\nx{a="1"} 2\n'],
    ["a negative counter", "# TYPE x counter\nx -1\n"],
    ["a histogram sample without suffix", "# TYPE h histogram\nh 1\n"],
    ["a bucket without le", '# TYPE h histogram\nh_bucket 1\nh_bucket{le="+Inf"} 1\nh_count 1\n'],
    ["buckets that are not cumulative", '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n'],
    ["a histogram without a +Inf bucket", '# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1\n'],
    ["a +Inf bucket that differs from _count", '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 1\n'],
    ["a missing final newline", "x 1"],
    ["trailing garbage", "x 1 2 3\n"],
  ])("rejects %s", (_, text) => {
    expect(() => parsePrometheusText(text)).toThrow(PrometheusTextError);
  });
});
