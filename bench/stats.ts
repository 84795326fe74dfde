/**
 * The arithmetic of the benchmark: medians, ratios and a latency histogram. Pure, so the tests can
 * check it without starting a server.
 */

/** The median of `values` (the mean of the two middle ones for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (finite.length === 0) return Number.NaN
  const middle = Math.floor(finite.length / 2)
  return finite.length % 2 === 1
    ? (finite[middle] as number)
    : ((finite[middle - 1] as number) + (finite[middle] as number)) / 2
}

/** gateway ÷ bare; NaN when either side is missing or the divisor is zero. */
export function ratio(gateway: number, bare: number): number {
  return Number.isFinite(gateway) && Number.isFinite(bare) && bare > 0 ? gateway / bare : Number.NaN
}

/** The largest finite value; NaN when there is none. */
export function peak(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v))
  return finite.length === 0 ? Number.NaN : Math.max(...finite)
}

/**
 * Response times in fixed 10 µs buckets up to 1 s, plus the exact maximum. autocannon's own
 * histogram keeps whole milliseconds, too coarse when a 5 ms p99 is the target.
 */
export class LatencyHistogram {
  static readonly bucketUs = 10
  static readonly buckets = 100_000
  private readonly counts = new Uint32Array(LatencyHistogram.buckets + 1)
  count = 0
  maxMs = 0
  private sumMs = 0

  record(ms: number): void {
    const index = Math.min(Math.floor((ms * 1000) / LatencyHistogram.bucketUs), LatencyHistogram.buckets)
    this.counts[index] = (this.counts[index] ?? 0) + 1
    this.count++
    this.sumMs += ms
    if (ms > this.maxMs) this.maxMs = ms
  }

  /** The upper bound of the bucket holding the `p`-th percentile (0 < p ≤ 100), in ms; NaN when empty. */
  percentile(p: number): number {
    if (this.count === 0) return Number.NaN
    const rank = Math.max(1, Math.ceil((p / 100) * this.count))
    let seen = 0
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i] ?? 0
      if (seen >= rank) {
        if (i === LatencyHistogram.buckets) return this.maxMs
        return Math.min(((i + 1) * LatencyHistogram.bucketUs) / 1000, this.maxMs)
      }
    }
    return this.maxMs
  }

  summary(): LatencySummary {
    return {
      count: this.count,
      meanMs: this.count === 0 ? Number.NaN : this.sumMs / this.count,
      p50Ms: this.percentile(50),
      p99Ms: this.percentile(99),
      maxMs: this.count === 0 ? Number.NaN : this.maxMs,
    }
  }
}

export interface LatencySummary {
  readonly count: number
  readonly meanMs: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
}

/** A number for a table: a dash when it is missing. */
export function fmt(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return '–'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** A Markdown table; cells are escaped for the pipe character. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}
