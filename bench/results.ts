import { fmt, markdownTable, median, peak, ratio } from './stats.js'

/** The figures of one server in one round. */
export interface SideFigures {
  readonly requestsPerSec: number
  readonly requests: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
  readonly rssPeakMb: number
  /** CPU time of the server process (user + system) per request, µs: comparable across a busy machine. */
  readonly cpuUsPerRequest?: number
  /** Responses of another status than expected, connection errors and timeouts. */
  readonly unexpected: number
}

export interface Round {
  readonly gateway: SideFigures
  readonly bare: SideFigures
  /**
   * The contract floor: bare Fastify answering the same body with the gateway's response headers,
   * set from an async onRequest hook, with an async onResponse hook (bench/floor-server.js).
   */
  readonly floor?: SideFigures
}

export interface ScenarioResult {
  readonly name: string
  readonly title: string
  readonly expectedStatus: number
  /** Why it did not run (e.g. REDIS_URL not set). */
  readonly skipped?: string
  readonly rounds: readonly Round[]
  readonly notes: readonly string[]
}

type SideMedians = { rps: number; p50: number; p99: number; max: number; rss: number; cpu: number }

export interface ScenarioMedians {
  readonly gateway: SideMedians
  readonly bare: SideMedians
  /** NaN figures when the floor was not measured. */
  readonly floor: SideMedians
  /** Gateway ÷ bare, the median of the per-round ratios. */
  readonly ratio: number
  /** Gateway ÷ contract floor, likewise. */
  readonly floorRatio: number
  /** Contract floor ÷ bare: what the contract's headers and hooks cost by themselves. */
  readonly contractRatio: number
  readonly unexpected: number
}

export const roundRatio = (round: Round) => ratio(round.gateway.requestsPerSec, round.bare.requestsPerSec)
const floorRatioOf = (round: Round) => ratio(round.gateway.requestsPerSec, round.floor?.requestsPerSec ?? Number.NaN)
const contractRatioOf = (round: Round) => ratio(round.floor?.requestsPerSec ?? Number.NaN, round.bare.requestsPerSec)

const MISSING: SideFigures = {
  requestsPerSec: Number.NaN,
  requests: 0,
  p50Ms: Number.NaN,
  p99Ms: Number.NaN,
  maxMs: Number.NaN,
  rssPeakMb: Number.NaN,
  unexpected: 0,
}

/** Medians across rounds; RSS is the peak across rounds instead, and unexpected responses are summed. */
export function mediansOf(result: ScenarioResult): ScenarioMedians {
  const side = (pick: (r: Round) => SideFigures) => ({
    rps: median(result.rounds.map((r) => pick(r).requestsPerSec)),
    p50: median(result.rounds.map((r) => pick(r).p50Ms)),
    p99: median(result.rounds.map((r) => pick(r).p99Ms)),
    max: median(result.rounds.map((r) => pick(r).maxMs)),
    rss: peak(result.rounds.map((r) => pick(r).rssPeakMb)),
    cpu: median(result.rounds.map((r) => pick(r).cpuUsPerRequest ?? Number.NaN)),
  })
  return {
    gateway: side((r) => r.gateway),
    bare: side((r) => r.bare),
    floor: side((r) => r.floor ?? MISSING),
    ratio: median(result.rounds.map(roundRatio)),
    floorRatio: median(result.rounds.map(floorRatioOf)),
    contractRatio: median(result.rounds.map(contractRatioOf)),
    unexpected: result.rounds.reduce(
      (sum, r) => sum + r.gateway.unexpected + r.bare.unexpected + (r.floor?.unexpected ?? 0),
      0,
    ),
  }
}

const ROUND_HEADER = [
  'round',
  'gateway req/s',
  'p50 ms',
  'p99 ms',
  'max ms',
  'RSS peak MB',
  'bare req/s',
  'p50 ms',
  'p99 ms',
  'max ms',
  'RSS peak MB',
  'floor req/s',
  'p99 ms',
  'ratio to bare',
  'ratio to floor',
]

/** One scenario, round by round, then its medians. */
export function roundsTable(result: ScenarioResult): string {
  const cells = (s: { rps: number; p50: number; p99: number; max: number; rss: number }) => [
    fmt(s.rps),
    fmt(s.p50, 2),
    fmt(s.p99, 2),
    fmt(s.max, 1),
    fmt(s.rss, 1),
  ]
  const figures = (s: SideFigures) => ({
    rps: s.requestsPerSec,
    p50: s.p50Ms,
    p99: s.p99Ms,
    max: s.maxMs,
    rss: s.rssPeakMb,
  })
  const rows = result.rounds.map((round, i) => [
    String(i + 1),
    ...cells(figures(round.gateway)),
    ...cells(figures(round.bare)),
    fmt(round.floor?.requestsPerSec ?? Number.NaN),
    fmt(round.floor?.p99Ms ?? Number.NaN, 2),
    fmt(roundRatio(round), 3),
    fmt(floorRatioOf(round), 3),
  ])
  const m = mediansOf(result)
  rows.push([
    '**median**',
    ...cells(m.gateway),
    ...cells(m.bare),
    fmt(m.floor.rps),
    fmt(m.floor.p99, 2),
    `**${fmt(m.ratio, 3)}**`,
    `**${fmt(m.floorRatio, 3)}**`,
  ])
  return markdownTable(ROUND_HEADER, rows)
}

/** One line per scenario: the medians side by side. */
export function summaryTable(results: readonly ScenarioResult[]): string {
  const rows = results.map((result) => {
    if (result.skipped !== undefined) {
      return [result.name, `skipped: ${result.skipped}`, '', '', '', '', '', '', '', '', '', '']
    }
    const m = mediansOf(result)
    return [
      result.name,
      fmt(m.gateway.rps),
      fmt(m.bare.rps),
      fmt(m.floor.rps),
      fmt(m.ratio, 3),
      fmt(m.floorRatio, 3),
      fmt(m.contractRatio, 3),
      `${fmt(m.gateway.p50, 2)} / ${fmt(m.gateway.p99, 2)} / ${fmt(m.gateway.max, 1)}`,
      `${fmt(m.bare.p50, 2)} / ${fmt(m.bare.p99, 2)} / ${fmt(m.bare.max, 1)}`,
      `${fmt(m.gateway.rss, 1)} / ${fmt(m.bare.rss, 1)}`,
      `${fmt(m.gateway.cpu, 1)} / ${fmt(m.bare.cpu, 1)} / ${fmt(m.floor.cpu, 1)}`,
      m.unexpected === 0 ? '0' : `**${fmt(m.unexpected)}**`,
    ]
  })
  return markdownTable(
    [
      'scenario',
      'gateway req/s',
      'bare req/s',
      'floor req/s',
      'gateway ÷ bare',
      'gateway ÷ floor',
      'floor ÷ bare (the contract)',
      'gateway p50 / p99 / max ms',
      'bare p50 / p99 / max ms',
      'RSS peak MB gateway / bare',
      'CPU µs/request gateway / bare / floor',
      'unexpected responses',
    ],
    rows,
  )
}

export type Verdict = 'PASS' | 'FAIL' | 'not measured' | 'INVALID'

export interface TargetResult {
  readonly target: string
  readonly measured: string
  readonly verdict: Verdict
}

/** The targets, judged on the medians of this run. */
export function evaluateTargets(results: readonly ScenarioResult[]): TargetResult[] {
  const byName = new Map(results.filter((r) => r.skipped === undefined && r.rounds.length > 0).map((r) => [r.name, r]))
  const skippedWhy = (name: string) => results.find((r) => r.name === name)?.skipped
  const unmeasured = (target: string, ...names: string[]): TargetResult => {
    const why = names.map(skippedWhy).find((s) => s !== undefined)
    return { target, measured: why === undefined ? 'scenario not run' : `skipped: ${why}`, verdict: 'not measured' }
  }
  const judge = (target: string, names: string[], measure: (m: ScenarioMedians[]) => [string, boolean]) => {
    const picked = names.map((n) => byName.get(n))
    if (picked.some((r) => r === undefined)) return unmeasured(target, ...names)
    const medians = picked.map((r) => mediansOf(r as ScenarioResult))
    const [measured, ok] = measure(medians)
    if (medians.some((m) => m.unexpected > 0)) {
      return {
        target,
        measured: `${measured} (unexpected responses: the run is not valid)`,
        verdict: 'INVALID' as const,
      }
    }
    return { target, measured, verdict: ok ? ('PASS' as const) : ('FAIL' as const) }
  }
  const ratioAtLeast = (name: string, floor: number, what: string) =>
    judge(`${what}: median ratio ≥ ${fmt(floor, 2)} of bare Fastify req/s`, [name], ([m]) => [
      fmt(m?.ratio ?? Number.NaN, 3),
      (m?.ratio ?? 0) >= floor,
    ])

  const targets: TargetResult[] = [
    ratioAtLeast('get-warn', 0.75, 'GET /v1/studios/{id}, LOG_LEVEL=warn'),
    judge(
      'GET /v1/studios/{id}, LOG_LEVEL=warn: median ratio ≥ 0.85 of the contract floor req/s',
      ['get-warn'],
      ([m]) => [fmt(m?.floorRatio ?? Number.NaN, 3), (m?.floorRatio ?? 0) >= 0.85],
    ),
    ratioAtLeast('get-info', 0.55, 'The same at LOG_LEVEL=info (one access-log line per request)'),
    ratioAtLeast('redis', 0.6, 'With Redis rate-limit counters'),
    ratioAtLeast('list-100', 0.5, 'GET /v1/studios?limit=100'),
  ]
  for (const name of ['401-unknown', '401-malformed']) {
    targets.push(
      judge(
        `Refusing is cheapest: ${name} ≥ 1.0× get-warn's gateway req/s`,
        [name, 'get-warn'],
        ([rejected, success]) => {
          const r = rejected?.gateway.rps ?? Number.NaN
          const s = success?.gateway.rps ?? Number.NaN
          return [`${fmt(r)} vs ${fmt(s)} req/s (${fmt(ratio(r, s), 2)}×)`, r >= s]
        },
      ),
    )
  }
  const measured = [...byName.values()]
  if (measured.length === 0) {
    targets.push(unmeasured('RSS peak ≤ 110 MB under load (gateway, every scenario)'))
    targets.push(unmeasured("p99 ≤ 2× bare Fastify's p99 in the same run (every scenario)"))
  } else {
    const worst = measured
      .map((r) => ({ name: r.name, rss: mediansOf(r).gateway.rss }))
      .reduce((a, b) => (b.rss > a.rss ? b : a))
    targets.push({
      target: 'RSS peak ≤ 110 MB under load (gateway, every scenario)',
      measured: `${fmt(worst.rss, 1)} MB (${worst.name})`,
      verdict: Number.isFinite(worst.rss) ? (worst.rss <= 110 ? 'PASS' : 'FAIL') : 'not measured',
    })
    const p99 = measured
      .map((r) => {
        const m = mediansOf(r)
        return { name: r.name, times: ratio(m.gateway.p99, m.bare.p99), unexpected: m.unexpected }
      })
      .reduce((a, b) => (b.times > a.times ? b : a))
    targets.push({
      target: "p99 ≤ 2× bare Fastify's p99 in the same run (every scenario)",
      measured: `${fmt(p99.times, 2)}× at worst (${p99.name})`,
      verdict: Number.isFinite(p99.times) ? (p99.times <= 2 ? 'PASS' : 'FAIL') : 'not measured',
    })
  }
  return targets
}

export function targetsTable(targets: readonly TargetResult[]): string {
  return markdownTable(
    ['target', 'measured', 'verdict'],
    targets.map((t) => [t.target, t.measured, t.verdict === 'PASS' ? 'PASS' : `**${t.verdict}**`]),
  )
}

export const ANALYSIS_START = '<!-- analysis:start (hand-written: kept as is when the benchmark rewrites this file) -->'
export const ANALYSIS_END = '<!-- analysis:end -->'
const PLACEHOLDER =
  '## Analysis\n\n(Not written yet: where the time goes, from `npm run bench:profile`, and what to change.)'

/** The hand-written analysis of a previous RESULTS.md, or a placeholder. */
export function extractAnalysis(previous: string | undefined): string {
  if (previous === undefined) return PLACEHOLDER
  const start = previous.indexOf(ANALYSIS_START)
  const end = previous.indexOf(ANALYSIS_END)
  if (start === -1 || end === -1 || end < start) return PLACEHOLDER
  return previous.slice(start + ANALYSIS_START.length, end).trim()
}

export interface RunInfo {
  readonly date: string
  readonly machine: string
  readonly node: string
  readonly commit: string
  readonly command: string
  readonly settings: readonly string[]
  readonly notes: readonly string[]
}

/** The whole RESULTS.md: generated figures, then the analysis carried over from `previous`. */
export function renderResultsFile(info: RunInfo, results: readonly ScenarioResult[], previous?: string): string {
  const sections = [
    '# Benchmark results',
    '',
    '<!-- Written by `npm run bench` (bench/run.ts). Everything outside the analysis markers is',
    '     regenerated on each run; edit the analysis only. -->',
    '',
    `- Date: ${info.date}`,
    `- Machine: ${info.machine}`,
    `- Node: ${info.node}`,
    `- Commit: ${info.commit}`,
    `- Command: \`${info.command}\``,
    ...info.settings.map((s) => `- ${s}`),
    ...info.notes.map((n) => `- ${n}`),
    '',
    '## Targets (issue 15)',
    '',
    targetsTable(evaluateTargets(results)),
    '',
    '## Summary (medians across rounds; RSS: the peak)',
    '',
    summaryTable(results),
    '',
    '## Rounds',
    '',
    'Rounds alternate gateway, bare, floor, gateway, bare, floor…; each ratio divides a gateway round by',
    'the bare (or floor) round that followed it, so drift of the machine between rounds cancels.',
  ]
  for (const result of results) {
    sections.push('', `### ${result.name}: ${result.title}`, '')
    if (result.skipped !== undefined) {
      sections.push(`skipped: ${result.skipped}`)
      continue
    }
    sections.push(roundsTable(result))
    if (result.notes.length > 0) sections.push('', ...result.notes.map((n) => `- ${n}`))
  }
  sections.push('', ANALYSIS_START, '', extractAnalysis(previous), '', ANALYSIS_END, '')
  return sections.join('\n')
}
