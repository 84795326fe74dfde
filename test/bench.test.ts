import t from 'tap'
import {
  type CpuProfile,
  formatComparison,
  formatSummary,
  packageOf,
  summariseProfile,
} from '../bench/profile-summary.js'
import {
  ANALYSIS_END,
  ANALYSIS_START,
  evaluateTargets,
  extractAnalysis,
  mediansOf,
  type Round,
  renderResultsFile,
  roundsTable,
  type ScenarioResult,
  type SideFigures,
  summaryTable,
} from '../bench/results.js'
import { fmt, LatencyHistogram, markdownTable, median, peak, ratio } from '../bench/stats.js'

// The benchmark's pure parts: its arithmetic, its verdicts, its file, and the profile summariser.
// No timing is asserted here: figures belong to `npm run bench`.

t.test('median, ratio and peak', async (t) => {
  t.equal(median([3, 1, 2]), 2, 'odd count: the middle value')
  t.equal(median([4, 1, 3, 2]), 2.5, 'even count: the mean of the two middle values')
  t.ok(Number.isNaN(median([])), 'no value: NaN')
  t.equal(median([Number.NaN, 5]), 5, 'missing values are ignored')
  t.equal(ratio(50, 100), 0.5)
  t.ok(Number.isNaN(ratio(50, 0)), 'no divisor: NaN')
  t.ok(Number.isNaN(ratio(Number.NaN, 10)))
  t.equal(peak([1, 7, Number.NaN, 3]), 7)
  t.ok(Number.isNaN(peak([])))
})

t.test('the latency histogram reports percentiles at 10 µs resolution', async (t) => {
  const h = new LatencyHistogram()
  t.ok(Number.isNaN(h.percentile(50)), 'empty: NaN')
  t.ok(Number.isNaN(h.summary().p99Ms))
  for (let i = 1; i <= 100; i++) h.record(i / 10) // 0.1 ms … 10 ms
  const s = h.summary()
  t.equal(s.count, 100)
  t.equal(s.p50Ms, 5.01, 'p50: the bucket holding 5.0 ms, by its upper bound')
  t.equal(s.p99Ms, 9.91)
  t.equal(s.maxMs, 10)
  t.equal(Math.round(s.meanMs * 100) / 100, 5.05)
  h.record(5000)
  t.equal(h.percentile(100), 5000, 'beyond the last bucket: the exact maximum')
})

t.test('tables and numbers', async (t) => {
  t.equal(fmt(12345.678), '12,346')
  t.equal(fmt(1.23456, 2), '1.23')
  t.equal(fmt(Number.NaN), '–', 'a missing figure is a dash')
  t.equal(markdownTable(['a', 'b'], [['1', 'x|y']]), '| a | b |\n| --- | --- |\n| 1 | x\\|y |')
})

const side = (requestsPerSec: number, extra: Partial<SideFigures> = {}): SideFigures => ({
  requestsPerSec,
  requests: requestsPerSec * 8,
  p50Ms: 1,
  p99Ms: 4,
  maxMs: 20,
  rssPeakMb: 90,
  unexpected: 0,
  ...extra,
})

const scenario = (name: string, rounds: Round[], extra: Partial<ScenarioResult> = {}): ScenarioResult => ({
  name,
  title: `${name} title`,
  expectedStatus: 200,
  rounds,
  notes: [],
  ...extra,
})

t.test('medians across rounds, ratio per round', async (t) => {
  const result = scenario('get-warn', [
    { gateway: side(800, { rssPeakMb: 100 }), bare: side(1000), floor: side(900) },
    { gateway: side(600), bare: side(1000, { p99Ms: 2 }), floor: side(900) },
    { gateway: side(900), bare: side(1000), floor: side(900) },
  ])
  const m = mediansOf(result)
  t.equal(m.gateway.rps, 800)
  t.equal(m.ratio, 0.8, 'the median of the per-round ratios')
  t.equal(Math.round(m.floorRatio * 1000) / 1000, 0.889, 'the gateway against the contract floor')
  t.equal(m.contractRatio, 0.9, 'what the contract costs by itself')
  t.equal(m.gateway.rss, 100, 'RSS: the peak across rounds, not the median')
  t.equal(m.bare.p99, 4)
  const table = roundsTable(result)
  t.match(table, /\| 2 \| 600 \|/, 'one row per round')
  t.match(table, /\*\*median\*\*.*\*\*0\.800\*\*/, 'then the medians')
  t.match(summaryTable([result, scenario('redis', [], { skipped: 'REDIS_URL not set' })]), /skipped: REDIS_URL not set/)
})

t.test('targets', async (t) => {
  const round = (g: number, b: number, extra: Partial<SideFigures> = {}, f = b * 0.9) => ({
    gateway: side(g, extra),
    bare: side(b),
    floor: side(f),
  })
  const verdicts = (results: ScenarioResult[]) =>
    Object.fromEntries(evaluateTargets(results).map((target) => [target.target, target.verdict]))

  const passing = verdicts([
    scenario('get-warn', [round(800, 1000)]),
    scenario('get-info', [round(600, 1000)]),
    scenario('401-unknown', [round(900, 1000)]),
    scenario('401-malformed', [round(800, 1000)]),
    scenario('redis', [round(650, 1000)]),
    scenario('list-100', [round(550, 1000)]),
  ])
  t.same(new Set(Object.values(passing)), new Set(['PASS']), 'every target met')

  const failing = evaluateTargets([
    scenario('get-warn', [round(760, 1000, { p99Ms: 9, rssPeakMb: 130 }, 1000)]),
    scenario('get-info', [round(400, 1000)]),
    scenario('401-unknown', [round(600, 1000)]),
    scenario('401-malformed', [round(900, 1000)]),
    scenario('list-100', [round(300, 1000)]),
  ])
  const byTarget = Object.fromEntries(failing.map((target) => [target.target, target]))
  t.equal(byTarget['GET /v1/studios/{id}, LOG_LEVEL=warn: median ratio ≥ 0.75 of bare Fastify req/s']?.verdict, 'PASS')
  t.match(byTarget['GET /v1/studios/{id}, LOG_LEVEL=warn: median ratio ≥ 0.85 of the contract floor req/s'], {
    verdict: 'FAIL',
    measured: '0.760',
  })
  t.equal(byTarget['GET /v1/studios?limit=100: median ratio ≥ 0.50 of bare Fastify req/s']?.verdict, 'FAIL')
  t.match(byTarget["p99 ≤ 2× bare Fastify's p99 in the same run (every scenario)"], {
    verdict: 'FAIL',
    measured: /2\.25× at worst \(get-warn\)/,
  })
  t.match(byTarget['RSS peak ≤ 110 MB under load (gateway, every scenario)'], {
    verdict: 'FAIL',
    measured: /130\.0 MB \(get-warn\)/,
  })
  t.equal(byTarget["Refusing is cheapest: 401-unknown ≥ 1.0× get-warn's gateway req/s"]?.verdict, 'FAIL')
  t.equal(byTarget["Refusing is cheapest: 401-malformed ≥ 1.0× get-warn's gateway req/s"]?.verdict, 'PASS')
  t.equal(
    byTarget['With Redis rate-limit counters: median ratio ≥ 0.60 of bare Fastify req/s']?.measured,
    'scenario not run',
  )

  const skipped = evaluateTargets([scenario('redis', [], { skipped: 'REDIS_URL not set' })])
  t.match(
    skipped.find((target) => target.target.startsWith('With Redis')),
    { verdict: 'not measured', measured: 'skipped: REDIS_URL not set' },
  )
  t.match(
    skipped.find((target) => target.target.startsWith('RSS')),
    { verdict: 'not measured' },
  )

  const invalid = evaluateTargets([scenario('get-warn', [round(800, 1000, { unexpected: 3 })])])
  t.equal(invalid[0]?.verdict, 'INVALID', 'unexpected answers make a figure invalid, never a PASS')
})

t.test('RESULTS.md keeps its hand-written analysis across regenerations', async (t) => {
  const info = {
    date: '2026-01-01T00:00:00.000Z',
    machine: '2 cores',
    node: 'v20.0.0',
    commit: 'abc1234',
    command: 'npm run bench',
    settings: ['64 connections'],
    notes: [],
  }
  const results = [scenario('get-warn', [{ gateway: side(800), bare: side(1000) }])]
  const first = renderResultsFile(info, results)
  t.match(first, /## Analysis\n\n\(Not written yet/, 'a placeholder on the first run')
  t.match(first, /- Machine: 2 cores/)
  t.match(first, /### get-warn: get-warn title/)

  const edited = first.replace(/## Analysis[\s\S]*?(?=\n\n<!-- analysis:end)/, '## Analysis\n\nWritten by hand.')
  const second = renderResultsFile({ ...info, date: '2026-02-02T00:00:00.000Z' }, results, edited)
  t.match(second, /- Date: 2026-02-02/, 'the figures are regenerated')
  t.equal(extractAnalysis(second), '## Analysis\n\nWritten by hand.', 'the analysis is carried over')
  t.equal(second.split(ANALYSIS_START).length, 2, 'exactly one analysis section')
  t.equal(extractAnalysis('no markers here'), extractAnalysis(undefined), 'no markers: the placeholder')
  t.equal(extractAnalysis(`${ANALYSIS_END} ${ANALYSIS_START}`), extractAnalysis(undefined))
})

const ROOT = '/repo'
const node = (id: number, functionName: string, url: string, children: number[] = [], lineNumber = 0) => ({
  id,
  callFrame: { functionName, url, lineNumber, columnNumber: 0 },
  children,
})

/** root → (program), handler [ours] → executeQuery [kysely] → all [native], handler → Hash [node], (idle), (gc). */
const fixture: CpuProfile = {
  nodes: [
    node(1, '(root)', '', [2, 3, 7, 8]),
    node(2, '(program)', ''),
    node(3, 'handler', 'file:///repo/dist/routes/v1/studios/index.js', [4, 6], 41),
    node(4, 'executeQuery', 'file:///repo/node_modules/kysely/dist/esm/dialect/sqlite/sqlite-driver.js', [5], 59),
    node(5, 'all', ''),
    node(6, 'Hash', 'node:internal/crypto/hash', [], 87),
    node(7, '(idle)', ''),
    node(8, '(garbage collector)', ''),
  ],
  startTime: 0,
  endTime: 1000,
  samples: [3, 4, 5, 5, 6, 7, 7, 8, 2],
  timeDeltas: [100, 100, 100, 100, 100, 100, 100, 100, 100],
}

t.test('the profile summariser groups self time by package, file and function', async (t) => {
  const s = summariseProfile(fixture, { requests: 7, root: ROOT })
  t.equal(s.sampledMs, 0.9)
  t.equal(s.idleMs, 0.2)
  t.equal(s.busyMs, 0.7)
  t.equal(s.busyUsPerRequest, 100)
  const pkg = Object.fromEntries(s.byPackage.map((r) => [r.name, r.ms * 1000]))
  t.same(pkg, {
    kysely: 300, // its own frame and the native call it made
    'gateway (our code)': 100,
    'node core': 100,
    '(garbage collector)': 100,
    '(program)': 100,
  })
  t.equal(s.byPackage[0]?.name, 'kysely', 'largest first')
  t.equal(Math.round((s.byPackage[0]?.share ?? 0) * 1000), 429, 'share of the busy time')
  t.equal(s.byPackage[0]?.usPerRequest, 300 / 7)
  t.match(s.byFunction[0], { name: '[native] all', package: 'kysely' }, 'native code billed to its caller')
  t.ok(
    s.byFunction.some((r) => r.name === 'handler dist/routes/v1/studios/index.js:42'),
    'functions are named with their file and 1-based line',
  )
  t.match(s.byFile[0], { name: 'kysely/dist/esm/dialect/sqlite/sqlite-driver.js', package: 'kysely' })
  t.same(
    s.oursInclusive.map((r) => [r.name, r.ms * 1000]),
    [['handler dist/routes/v1/studios/index.js:42', 500]],
    'inclusive: every sample with our function on the stack',
  )
  const text = formatSummary(s, 'fixture')
  t.match(text, /### fixture/)
  t.match(text, /100\.0 µs of CPU per request/)
  t.match(text, /\| kysely \| 0 \| 42\.9 % \| 42\.9 \|/)
})

t.test('a window selects the samples taken under load', async (t) => {
  const s = summariseProfile(fixture, { window: { startUs: 250, endUs: 650 }, root: ROOT })
  t.equal(s.sampledMs, 0.4, 'samples at 300, 400, 500 and 600 µs')
  t.equal(s.idleMs, 0.1)
  t.equal(s.requests, undefined)
  t.ok(Number.isNaN(s.busyUsPerRequest), 'no request count: no cost per request')
  t.match(formatSummary(s, 'windowed'), /idle 0 ms\./)
})

t.test('packages of script URLs', async (t) => {
  t.same(packageOf('node:internal/http'), { pkg: 'node core', file: 'node:internal/http', ours: false })
  t.same(packageOf('file:///repo/node_modules/fastify/node_modules/@fastify/error/index.js', ROOT), {
    pkg: '@fastify/error',
    file: '@fastify/error/index.js',
    ours: false,
  })
  t.same(packageOf('file:///repo/dist/app.js', ROOT), { pkg: 'gateway (our code)', file: 'dist/app.js', ours: true })
  t.same(packageOf('file:///elsewhere/x.js', ROOT), { pkg: 'other', file: '/elsewhere/x.js', ours: false })
})

t.test('the comparison shows what the gateway adds per request', async (t) => {
  const gateway = summariseProfile(fixture, { requests: 7, root: ROOT })
  const bare = summariseProfile({ ...fixture, samples: [6, 7, 7, 7, 7, 7, 7, 7, 2] }, { requests: 7, root: ROOT })
  const text = formatComparison(gateway, bare)
  t.match(text, /\| kysely \| 42\.9 \| 0\.0 \| 42\.9 \|/, 'a package only the gateway uses')
  t.match(text, /\| node core \| 14\.3 \| 14\.3 \| 0\.0 \|/, 'a package both use')
  t.match(text, /\*\*total busy\*\* \| 100\.0 \| 28\.6 \| 71\.4 \|/)
  t.ok(text.indexOf('kysely') < text.indexOf('node core'), 'largest addition first')
})
