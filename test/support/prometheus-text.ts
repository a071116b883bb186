/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4),
 * for tests: it throws on any line the format does not allow, instead of
 * skipping it as lenient scrapers do. Checked: metric and label names,
 * label value escapes, sample values, one HELP and one TYPE per family
 * before its samples, samples of a family kept together, the suffixes a
 * type allows (`_bucket`/`_sum`/`_count` for histograms, `le` on buckets),
 * no duplicate series, histogram buckets cumulative and ending in `+Inf`
 * equal to `_count`. No maintained npm parser does all of this.
 */

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One metric family: its HELP, TYPE and samples. */
export interface MetricFamily {
  name: string;
  help: string | undefined;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/** Thrown for text that is not valid exposition format; names the line. */
export class PrometheusTextError extends Error {
  override readonly name = "PrometheusTextError";
}

/** Parses a whole exposition; throws {@link PrometheusTextError} on the first invalid line. */
export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  if (text !== "" && !text.endsWith("\n")) throw new PrometheusTextError("the exposition must end with a newline");
  const families = new Map<string, MetricFamily>();
  const finished = new Set<string>();
  let current: MetricFamily | undefined;
  const seriesSeen = new Set<string>();
  const lines = text.split("\n");
  lines.pop();
  lines.forEach((line, index) => {
    const fail = (why: string): never => {
      throw new PrometheusTextError(`line ${index + 1}: ${why}: ${JSON.stringify(line)}`);
    };
    if (line === "") return;
    const family = (name: string): MetricFamily => {
      if (!METRIC_NAME.test(name)) fail("bad metric name");
      if (current?.name === name) return current;
      if (finished.has(name) || families.has(name)) fail(`metric family ${name} is not contiguous`);
      if (current) finished.add(current.name);
      current = { name, help: undefined, type: "untyped", samples: [] };
      families.set(name, current);
      return current;
    };
    if (line.startsWith("#")) {
      const match = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!match) {
        if (/^# ?(HELP|TYPE)\b/.test(line)) fail("malformed HELP or TYPE");
        return; // A plain comment.
      }
      const [, keyword, name = "", rest = ""] = match;
      const target = family(name);
      if (target.samples.length > 0) fail(`${keyword} after samples of ${name}`);
      if (keyword === "HELP") {
        if (target.help !== undefined) fail("second HELP");
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ""))) fail("bad escape in HELP");
        target.help = rest.replace(/\\n/g, "\n").replace(/\\\\/g, "\\");
      } else {
        if (target.type !== "untyped" || !TYPES.has(rest)) fail("bad or second TYPE");
        target.type = rest as MetricFamily["type"];
      }
      return;
    }
    const sample = parseSample(line, fail);
    const familyName = familyOf(sample.name, current);
    const target = family(familyName);
    checkSuffix(target, sample, fail);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seriesSeen.has(key)) fail("duplicate series");
    seriesSeen.add(key);
    target.samples.push(sample);
  });
  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
  return families;
}

/** Parses `name{labels} value [timestamp]`. */
function parseSample(line: string, fail: (why: string) => never): Sample {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!nameMatch) return fail("bad sample name");
  const name = nameMatch[0];
  let at = name.length;
  const labels: Record<string, string> = {};
  if (line[at] === "{") {
    at++;
    while (line[at] !== "}") {
      const labelMatch = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(at));
      if (!labelMatch?.[1]) return fail("bad label");
      const labelName = labelMatch[1];
      if (!LABEL_NAME.test(labelName) || labelName.startsWith("__")) fail("reserved or bad label name");
      if (labelName in labels) fail("duplicate label");
      at += labelMatch[0].length;
      let value = "";
      for (;;) {
        const ch = line[at];
        if (ch === undefined) return fail("unterminated label value");
        if (ch === '"') break;
        if (ch === "\\") {
          const next = line[at + 1];
          if (next === "\\") value += "\\";
          else if (next === '"') value += '"';
          else if (next === "n") value += "\n";
          else return fail("bad escape in label value");
          at += 2;
          continue;
        }
        value += ch;
        at++;
      }
      labels[labelName] = value;
      at++;
      if (line[at] === ",") at++;
      else if (line[at] !== "}") return fail("expected , or }");
    }
    at++;
  }
  const rest = line.slice(at);
  const valueMatch = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
  if (!valueMatch?.[1]) return fail("bad value part");
  return { name, labels, value: parseValue(valueMatch[1], fail) };
}

/**
 * A value as the format defines it: what Go's ParseFloat accepts in decimal,
 * so NaN and Inf/Infinity in any letter case (prom-client writes "Nan").
 */
function parseValue(text: string, fail: (why: string) => never): number {
  if (/^nan$/i.test(text)) return Number.NaN;
  const infinity = /^([+-]?)inf(inity)?$/i.exec(text);
  if (infinity) return infinity[1] === "-" ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return fail("bad sample value");
  return Number(text);
}

/** The family a sample belongs to: a histogram's or summary's suffixed samples belong to the open family. */
function familyOf(sampleName: string, current: MetricFamily | undefined): string {
  if (current && (current.type === "histogram" || current.type === "summary")) {
    for (const suffix of ["_bucket", "_sum", "_count"]) {
      if (sampleName === current.name + suffix) return current.name;
    }
  }
  return sampleName;
}

function checkSuffix(family: MetricFamily, sample: Sample, fail: (why: string) => never): void {
  if (family.type === "histogram") {
    if (sample.name === family.name) fail("histogram sample without _bucket, _sum or _count");
    if (sample.name.endsWith("_bucket")) {
      if (sample.labels["le"] === undefined) fail("bucket without le");
      parseValue(sample.labels["le"] ?? "", fail);
    } else if ("le" in sample.labels) fail("le outside a bucket");
  }
  if ((family.type === "counter" || family.type === "histogram") && sample.value < 0) fail("negative counter");
}

/** Buckets per series: cumulative, a +Inf bucket equal to _count. */
function checkHistogram(family: MetricFamily): void {
  const series = new Map<string, { buckets: [number, number][]; count?: number }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (sample.name.endsWith("_bucket")) entry.buckets.push([le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le), sample.value]);
    else if (sample.name.endsWith("_count")) entry.count = sample.value;
  }
  for (const [key, entry] of series) {
    const fail = (why: string): never => {
      throw new PrometheusTextError(`histogram ${family.name}${key}: ${why}`);
    };
    const sorted = [...entry.buckets].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) if ((sorted[i]?.[1] ?? 0) < (sorted[i - 1]?.[1] ?? 0)) fail("buckets not cumulative");
    const inf = sorted.at(-1);
    if (!inf || inf[0] !== Number.POSITIVE_INFINITY) fail("no +Inf bucket");
    if (entry.count === undefined || inf?.[1] !== entry.count) fail("+Inf bucket differs from _count");
  }
}

/** The sum of the samples named `name` whose labels include `labels` (0 when there are none). */
export function sumSamples(families: Map<string, MetricFamily>, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  let found = false;
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (sample.name !== name) continue;
      if (Object.entries(labels).every(([key, value]) => sample.labels[key] === value)) {
        total += sample.value;
        found = true;
      }
    }
  }
  return found ? total : 0;
}
