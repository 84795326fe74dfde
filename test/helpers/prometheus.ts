/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), enough to check what
 * /metrics serves: every line is a comment, blank, or `name{label="value",…} number`; anything
 * else throws, so a malformed exposition fails the test that reads it.
 */
export interface Sample {
  readonly name: string
  readonly labels: Record<string, string>
  readonly value: number
}

export interface Exposition {
  readonly samples: Sample[]
  /** `# TYPE` of each metric family. */
  readonly types: Map<string, string>
  /** The value of the one sample of `name` whose labels include `labels`; undefined if none. */
  value(name: string, labels?: Record<string, string>): number | undefined
  /** Every sample of `name` whose labels include `labels`. */
  all(name: string, labels?: Record<string, string>): Sample[]
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
// Values are read like Go's ParseFloat, which Prometheus uses: NaN and Inf in any case (prom-client writes `Nan`).
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? ([-+]?(?:[0-9.]+(?:e[+-]?[0-9]+)?|inf|nan))$`, 'i')
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`)

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {}
  LABEL.lastIndex = 0
  while (LABEL.lastIndex < text.length) {
    const match = LABEL.exec(text)
    if (!match) throw new Error(`malformed labels in: ${line}`)
    const [, key, raw] = match as unknown as [string, string, string]
    labels[key] = raw.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c))
  }
  return labels
}

function readValue(text: string): number {
  const lower = text.toLowerCase()
  if (lower === 'nan') return Number.NaN
  if (lower.endsWith('inf')) return lower.startsWith('-') ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY
  return Number(text)
}

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ')) continue
    const type = TYPE.exec(line)
    if (type) {
      types.set(type[1] as string, type[2] as string)
      continue
    }
    const sample = SAMPLE.exec(line)
    if (!sample) throw new Error(`not a Prometheus exposition line: ${line}`)
    samples.push({
      name: sample[1] as string,
      labels: sample[2] ? parseLabels(sample[2], line) : {},
      value: readValue(sample[3] as string),
    })
  }
  const includes = (sample: Sample, labels: Record<string, string>) =>
    Object.entries(labels).every(([key, value]) => sample.labels[key] === value)
  const all = (name: string, labels: Record<string, string> = {}) =>
    samples.filter((sample) => sample.name === name && includes(sample, labels))
  return {
    samples,
    types,
    all,
    value(name, labels = {}) {
      const found = all(name, labels)
      if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`)
      return found[0]?.value
    },
  }
}
