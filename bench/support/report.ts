/**
 * Shared figure printing and round statistics for benches, so every bench
 * reports in the same one-line format (`<figure>  <value> <unit>
 * ratio=<r>  target=<op><t>`) that the README and CI logs quote verbatim.
 */

/** A ratio against a baseline measured in the same run, with its goal. */
export interface FigureComparison {
  ratio: number;
  /** e.g. ">=3"; omitted when the figure has no goal. */
  target?: string;
}

/** Prints one figure line; ratio and target are left out when not given. */
export function printFigure(figure: string, value: number, unit: string, comparison?: FigureComparison): void {
  const parts = [figure, `${formatValue(value)} ${unit}`];
  if (comparison) {
    parts.push(`ratio=${comparison.ratio.toFixed(2)}`);
    if (comparison.target !== undefined) parts.push(`target=${comparison.target}`);
  }
  console.log(parts.join("  "));
}

function formatValue(value: number): string {
  if (value >= 100) return value.toFixed(0);
  if (value >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

/** The median of a non-empty list. */
export function median(values: readonly number[]): number {
  return percentile(values, 0.5);
}

/** The `p` quantile (0..1) of a non-empty list, nearest-rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error("percentile of no values");
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[rank] as number;
}

/** How many rounds a figure takes. */
export interface RoundsInit {
  /** Rounds run first and thrown away (JIT, connection set-up). */
  warmups: number;
  /** Rounds whose median is the figure. */
  rounds: number;
}

/** The default: one warm-up, median of three. */
export const DEFAULT_ROUNDS: RoundsInit = { warmups: 1, rounds: 3 };

/**
 * Runs `round` (which returns a rate) warm-ups + rounds times and returns
 * the median of the measured rounds, so one noisy round cannot move a figure.
 */
export async function medianOfRounds(round: () => Promise<number>, init: RoundsInit = DEFAULT_ROUNDS): Promise<number> {
  for (let i = 0; i < init.warmups; i++) await round();
  const results: number[] = [];
  for (let i = 0; i < init.rounds; i++) results.push(await round());
  return median(results);
}

/**
 * Runs several measurements in alternation (a, b, a, b, ...) and returns
 * the median of each. Interleaving keeps a figure and its baseline under
 * the same machine load, so their ratio is meaningful on a busy host.
 */
export async function interleavedMedians<K extends string>(
  measurements: Record<K, () => Promise<number>>,
  init: RoundsInit = DEFAULT_ROUNDS,
): Promise<Record<K, number>> {
  const keys = Object.keys(measurements) as K[];
  const results = new Map<K, number[]>(keys.map((key) => [key, []]));
  for (let round = 0; round < init.warmups + init.rounds; round++) {
    for (const key of keys) {
      const rate = await measurements[key]();
      if (round >= init.warmups) results.get(key)?.push(rate);
    }
  }
  return Object.fromEntries(keys.map((key) => [key, median(results.get(key) ?? [])])) as Record<K, number>;
}
