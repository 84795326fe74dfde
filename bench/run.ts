import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, loadavg, release, tmpdir, totalmem, type } from 'node:os'
import { join, relative } from 'node:path'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import type { LoadResult } from './load-worker.js'
import {
  cpuSeconds,
  freePort,
  installCleanup,
  killAll,
  type LoadGenerator,
  peakRssMb,
  repoRoot,
  resetPeakRss,
  rssMb,
  type Server,
  startLoadGenerator,
  startServer,
} from './processes.js'
import {
  type CpuProfile,
  formatComparison,
  formatSummary,
  type ProfileSummary,
  summariseProfile,
} from './profile-summary.js'
import {
  evaluateTargets,
  mediansOf,
  type Round,
  renderResultsFile,
  roundsTable,
  type ScenarioResult,
  type SideFigures,
  summaryTable,
  targetsTable,
} from './results.js'
import { type Scenario, type Seed, scenarios, seedStore } from './scenarios.js'
import { fmt } from './stats.js'

const USAGE = `Usage: npm run bench [-- options]      (npm run bench:profile for a CPU profile)

  --duration S      seconds of load per measured round (default 8; 15 with --profile)
  --warmup S        seconds of unmeasured load before the first round of each server (default 3)
  --rounds N        measured rounds per server, alternating gateway / bare / contract floor (default 3)
  --connections N   concurrent connections (default 64), pipelining 1
  --only A,B        scenarios to run: ${scenarios.map((s) => s.name).join(', ')}
  --profile         profile the gateway, then the bare server (--cpu-prof) under load instead (default scenarios: get-warn,get-info)
  --no-write        print the tables but leave bench/RESULTS.md alone
  --results FILE    where to write the results (default bench/RESULTS.md)
  --gateway-node-args="FLAGS"
                    extra node flags for the gateway only, to try a runtime setting
                    (e.g. --gateway-node-args=--max-semi-space-size=4); recorded in the results
`

interface Settings {
  readonly durationS: number
  readonly warmupS: number
  readonly rounds: number
  readonly connections: number
  readonly selected: readonly Scenario[]
  readonly profile: boolean
  readonly write: boolean
  readonly resultsFile: string
  readonly gatewayNodeArgs: readonly string[]
}

function parseSettings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string' },
      warmup: { type: 'string' },
      rounds: { type: 'string' },
      connections: { type: 'string' },
      only: { type: 'string' },
      profile: { type: 'boolean', default: false },
      'no-write': { type: 'boolean', default: false },
      results: { type: 'string' },
      'gateway-node-args': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) {
    process.stdout.write(USAGE)
    process.exit(0)
  }
  const positive = (name: string, text: string | undefined, fallback: number, min = 1) => {
    if (text === undefined) return fallback
    const value = Number(text)
    if (!Number.isInteger(value) || value < min) throw new Error(`--${name} must be a whole number ≥ ${min}`)
    return value
  }
  const profile = values.profile ?? false
  const names = (values.only ?? (profile ? 'get-warn,get-info' : scenarios.map((s) => s.name).join(',')))
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '')
  const unknown = names.filter((n) => !scenarios.some((s) => s.name === n))
  if (unknown.length > 0)
    throw new Error(`unknown scenario ${unknown.join(', ')} (known: ${scenarios.map((s) => s.name).join(', ')})`)
  return {
    durationS: positive('duration', values.duration, profile ? 15 : 8),
    warmupS: positive('warmup', values.warmup, 3, 0),
    rounds: positive('rounds', values.rounds, 3),
    connections: positive('connections', values.connections, 64),
    selected: scenarios.filter((s) => names.includes(s.name)),
    profile,
    write: !(values['no-write'] ?? false),
    resultsFile: values.results ?? join(repoRoot, 'bench', 'RESULTS.md'),
    gatewayNodeArgs: (values['gateway-node-args'] ?? '').split(/\s+/).filter((a) => a !== ''),
  }
}

const say = (line: string) => process.stderr.write(`${line}\n`)

/** The run's own Redis key prefix: the shared Redis serves others too (its keys are dropped at the end). */
const REDIS_KEY_PREFIX = `studio-gateway-bench-${randomBytes(6).toString('hex')}:`

/** Deletes the keys this run wrote under its prefix (they would also expire with their window). */
async function dropRedisKeys(url: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${REDIS_KEY_PREFIX}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== '0')
  } catch (error) {
    say(`  warning: could not delete this run's Redis keys (${REDIS_KEY_PREFIX}*): ${String(error)}`)
  } finally {
    redis.disconnect()
  }
}

/** What every gateway of the run gets; the scenario adds LOG_LEVEL and, for Redis, REDIS_URL. */
function gatewayEnv(scenario: Scenario, dataDir: string): Record<string, string> {
  return {
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    LOG_LEVEL: scenario.logLevel,
    // High enough that no scenario is ever rate limited (the 401 scenarios included).
    RATE_LIMIT_MAX: '1000000000',
    RATE_LIMIT_UNAUTH_MAX: '1000000000',
    RATE_LIMIT_WINDOW: '1m',
    ...(scenario.redis && process.env.REDIS_URL
      ? { REDIS_URL: process.env.REDIS_URL, REDIS_KEY_PREFIX: REDIS_KEY_PREFIX }
      : {}),
  }
}

/**
 * The node flags the gateway is deployed with (README, "Running in production"; `npm start`): a
 * young generation of 4 MB semi-spaces instead of 16 keeps the RSS peak under load ~25 MB lower
 * for ~1.5 µs more GC per request. --gateway-node-args comes after them, so it can override them.
 */
const PRODUCTION_NODE_FLAGS = ['--max-semi-space-size=4']

async function startGateway(
  scenario: Scenario,
  dataDir: string,
  settings: Settings,
  nodeArgs: string[] = [],
): Promise<Server> {
  return startServer({
    name: 'gateway',
    args: [...PRODUCTION_NODE_FLAGS, ...settings.gatewayNodeArgs, ...nodeArgs, 'bin/studio-gateway.js', 'serve'],
    env: gatewayEnv(scenario, dataDir),
    port: await freePort(),
  })
}

interface Probe {
  readonly status: number
  readonly body: string
  readonly headers: Headers
}

async function probe(server: Server, path: string, headers: Record<string, string>): Promise<Probe> {
  const response = await fetch(`${server.url}${path}`, { headers, signal: AbortSignal.timeout(5000) })
  return { status: response.status, body: await response.text(), headers: response.headers }
}

/** Answers of the expected status, minus everything else (other statuses, errors, timeouts). */
function unexpectedOf(result: LoadResult, expectedStatus: number): number {
  const answered = Object.values(result.statusCounts).reduce((a, b) => a + b, 0)
  return answered - (result.statusCounts[String(expectedStatus)] ?? 0) + result.errors + result.timeouts
}

function describeStatuses(result: LoadResult): string {
  return Object.entries(result.statusCounts)
    .map(([status, count]) => `${status}×${count}`)
    .join(' ')
}

class ScenarioRunner {
  constructor(
    private readonly settings: Settings,
    private readonly load: LoadGenerator,
    private readonly seed: Seed,
    private readonly dataDir: string,
  ) {}

  private loadJob(server: Server, scenario: Scenario, durationS: number) {
    const { path, headers } = scenario.request(this.seed)
    return this.load.run({ url: `${server.url}${path}`, headers, connections: this.settings.connections, durationS })
  }

  private async warmUp(server: Server, scenario: Scenario) {
    if (this.settings.warmupS === 0) return
    const result = await this.loadJob(server, scenario, this.settings.warmupS)
    const unexpected = unexpectedOf(result, scenario.expectedStatus)
    if (unexpected > 0) {
      say(`  warning: ${server.name} warm-up had ${unexpected} unexpected answers (${describeStatuses(result)})`)
    }
  }

  private async measure(server: Server, scenario: Scenario): Promise<SideFigures> {
    resetPeakRss(server.pid)
    const cpuBefore = cpuSeconds(server.pid)
    const result = await this.loadJob(server, scenario, this.settings.durationS)
    const cpuUsPerRequest = ((cpuSeconds(server.pid) - cpuBefore) * 1e6) / result.requests
    return {
      cpuUsPerRequest,
      requestsPerSec: result.requestsPerSec,
      requests: result.requests,
      p50Ms: result.latency.p50Ms,
      p99Ms: result.latency.p99Ms,
      maxMs: result.latency.maxMs,
      rssPeakMb: peakRssMb(server.pid),
      unexpected: unexpectedOf(result, scenario.expectedStatus),
    }
  }

  /** The gateway's answer to the scenario's request, checked; the bare server will send the same body. */
  private async preflight(gateway: Server, scenario: Scenario, notes: string[]): Promise<Probe> {
    const { path, headers } = scenario.request(this.seed)
    const answer = await probe(gateway, path, headers)
    if (answer.status !== scenario.expectedStatus) {
      throw new Error(`${scenario.name}: the gateway answered ${answer.status}, expected ${scenario.expectedStatus}`)
    }
    const limit = answer.headers.get('ratelimit-limit')
    notes.push(
      limit === null
        ? 'The gateway sent no RateLimit-* header: rate limiting is not active in this build, so it is not measured here.'
        : `Rate limiting active (RateLimit-Limit: ${limit}).`,
    )
    return answer
  }

  async run(scenario: Scenario): Promise<ScenarioResult> {
    const notes: string[] = []
    const base = { name: scenario.name, title: scenario.title, expectedStatus: scenario.expectedStatus }
    if (scenario.redis && !process.env.REDIS_URL) {
      say(`${scenario.name}: skipped: REDIS_URL not set`)
      return { ...base, skipped: 'REDIS_URL not set', rounds: [], notes }
    }
    say(`${scenario.name}: ${scenario.title}`)
    const servers: Server[] = []
    try {
      const gateway = await startGateway(scenario, this.dataDir, this.settings)
      servers.push(gateway)
      const answer = await this.preflight(gateway, scenario, notes)
      const bare = await startBare(scenario, answer)
      servers.push(bare)
      const floor = await startFloor(scenario, answer)
      servers.push(floor)
      const { path, headers } = scenario.request(this.seed)
      for (const reference of [bare, floor]) {
        const referenceAnswer = await probe(reference, path, headers)
        if (
          referenceAnswer.status !== answer.status ||
          (answer.status === 200 && referenceAnswer.body !== answer.body)
        ) {
          throw new Error(`${scenario.name}: the ${reference.name} server does not answer like the gateway`)
        }
      }
      const floorAnswer = await probe(floor, path, headers)
      notes.push(
        `Contract floor headers: ${contractHeaders(answer)
          .map(([name]) => name)
          .join(', ')} (the gateway's answer sent ${[...answer.headers.keys()].length} headers, the floor ${
          [...floorAnswer.headers.keys()].length
        }).`,
      )
      notes.push(
        `Body: ${Buffer.byteLength(answer.body)} bytes, status ${answer.status}. RSS after start, before any load: ` +
          `gateway ${fmt(rssMb(gateway.pid), 1)} MB, bare ${fmt(rssMb(bare.pid), 1)} MB.`,
      )

      await this.warmUp(gateway, scenario)
      await this.warmUp(bare, scenario)
      await this.warmUp(floor, scenario)
      const rounds: Round[] = []
      let logLines = 0
      let logBytes = 0
      let gatewayRequests = 0
      for (let i = 1; i <= this.settings.rounds; i++) {
        const linesBefore = gateway.output.lines
        const bytesBefore = gateway.output.bytes
        const g = await this.measure(gateway, scenario)
        logLines += gateway.output.lines - linesBefore
        logBytes += gateway.output.bytes - bytesBefore
        gatewayRequests += g.requests
        const b = await this.measure(bare, scenario)
        const f = await this.measure(floor, scenario)
        rounds.push({ gateway: g, bare: b, floor: f })
        say(
          `  round ${i}/${this.settings.rounds}: gateway ${fmt(g.requestsPerSec)} req/s (p99 ${fmt(g.p99Ms, 2)} ms), ` +
            `bare ${fmt(b.requestsPerSec)} req/s (p99 ${fmt(b.p99Ms, 2)} ms), floor ${fmt(f.requestsPerSec)} req/s, ` +
            `ratio ${fmt(g.requestsPerSec / b.requestsPerSec, 3)} of bare, ${fmt(g.requestsPerSec / f.requestsPerSec, 3)} of floor` +
            (g.unexpected + b.unexpected + f.unexpected > 0
              ? `, UNEXPECTED answers: ${g.unexpected + b.unexpected + f.unexpected}`
              : ''),
        )
      }
      if (gatewayRequests > 0) {
        notes.push(
          `Gateway stdout (its log, a pipe drained by the harness): ${fmt(logLines / gatewayRequests, 2)} lines and ` +
            `${fmt(logBytes / gatewayRequests)} bytes per request.`,
        )
      }
      return { ...base, rounds, notes }
    } finally {
      for (const server of servers.reverse()) await server.stop()
      if (scenario.redis && process.env.REDIS_URL) await dropRedisKeys(process.env.REDIS_URL)
    }
  }

  /**
   * The gateway, then the bare server, each alone under --cpu-prof: warm-up, one loaded window, a
   * graceful stop (the profile is written on exit), a summary of each and their difference.
   */
  async profile(scenario: Scenario, profilesDir: string): Promise<string | undefined> {
    if (scenario.redis && !process.env.REDIS_URL) {
      say(`${scenario.name}: skipped: REDIS_URL not set`)
      return undefined
    }
    say(`${scenario.name}: profiling (${scenario.title})`)
    let answer: Probe | undefined
    let gateway: ProfileSummary
    try {
      gateway = await this.profileOne(scenario, profilesDir, 'gateway', async (nodeArgs) => {
        const server = await startGateway(scenario, this.dataDir, this.settings, nodeArgs)
        answer = await this.preflight(server, scenario, []).catch(async (error: unknown) => {
          await server.stop()
          throw error
        })
        return server
      })
    } finally {
      if (scenario.redis && process.env.REDIS_URL) await dropRedisKeys(process.env.REDIS_URL)
    }
    const bare = await this.profileOne(scenario, profilesDir, 'bare', (nodeArgs) =>
      startBare(scenario, answer as Probe, nodeArgs),
    )
    return [
      `## ${scenario.name}: ${scenario.title}`,
      '',
      formatComparison(gateway, bare),
      formatSummary(gateway, `gateway (${scenario.name})`),
      formatSummary(bare, `bare Fastify (${scenario.name})`),
    ].join('\n')
  }

  private async profileOne(
    scenario: Scenario,
    profilesDir: string,
    side: 'gateway' | 'bare',
    start: (nodeArgs: string[]) => Promise<Server>,
  ): Promise<ProfileSummary> {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-')
    const file = `${scenario.name}-${side}-${stamp}.cpuprofile`
    const server = await start([
      '--cpu-prof',
      '--cpu-prof-dir',
      profilesDir,
      '--cpu-prof-name',
      file,
      '--cpu-prof-interval',
      '500',
    ])
    let requests = 0
    let window: { startUs: number; endUs: number }
    try {
      await this.warmUp(server, scenario)
      // process.hrtime and V8's profiler both read the monotonic clock: the window selects the samples.
      const startUs = Number(process.hrtime.bigint() / 1000n)
      const result = await this.loadJob(server, scenario, this.settings.durationS)
      window = { startUs, endUs: Number(process.hrtime.bigint() / 1000n) }
      requests = result.requests
      say(`  ${side}: ${fmt(result.requestsPerSec)} req/s under the profiler, ${fmt(result.requests)} requests`)
    } finally {
      await server.stop()
    }
    const path = join(profilesDir, file)
    if (!existsSync(path)) throw new Error(`no profile was written at ${path}`)
    const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile
    let summary = summariseProfile(profile, { window, requests, root: repoRoot })
    if (summary.sampledMs === 0) {
      say('  warning: no sample inside the load window (clocks disagree?): summarising the whole profile')
      summary = summariseProfile(profile, { requests, root: repoRoot })
    }
    writeFileSync(path.replace(/\.cpuprofile$/, '.summary.md'), formatSummary(summary, `${side} (${scenario.name})`))
    say(`  ${side}: ${relative(repoRoot, path)} (summary beside it)`)
    return summary
  }
}

/** The bare server, answering what the gateway answered for the same request. */
async function startBare(scenario: Scenario, answer: Probe, nodeArgs: string[] = []): Promise<Server> {
  return startServer({
    name: 'bare',
    args: [...nodeArgs, 'bench/bare-server.js'],
    env: {
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      BENCH_ROUTE: scenario.bareRoute,
      BENCH_STATUS: String(answer.status),
      BENCH_BODY: answer.body,
    },
    port: await freePort(),
  })
}

/** Headers Node or Fastify set on any answer, which the floor server sets by itself. */
const TRANSPORT_HEADERS = new Set([
  'date',
  'connection',
  'keep-alive',
  'content-length',
  'content-type',
  'transfer-encoding',
])

/** The response headers the contract makes the gateway send (name and value), as the floor server repeats them. */
function contractHeaders(answer: Probe): [string, string][] {
  return [...answer.headers.entries()].filter(([name]) => !TRANSPORT_HEADERS.has(name))
}

/** The contract floor: bare Fastify with the gateway's answer's headers, from two async hooks. */
async function startFloor(scenario: Scenario, answer: Probe): Promise<Server> {
  return startServer({
    name: 'floor',
    args: ['bench/floor-server.js'],
    env: {
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      BENCH_ROUTE: scenario.bareRoute,
      BENCH_STATUS: String(answer.status),
      BENCH_BODY: answer.body,
      BENCH_HEADERS: JSON.stringify(Object.fromEntries(contractHeaders(answer))),
    },
    port: await freePort(),
  })
}

function gitCommit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd: repoRoot,
      encoding: 'utf8',
    }).trim()
    return dirty === '' ? head : `${head} (with uncommitted changes)`
  } catch {
    return 'unknown'
  }
}

const packageVersion = (name: string) =>
  (JSON.parse(readFileSync(join(repoRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
    .version

const loads = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ')

async function main() {
  const settings = parseSettings(process.argv.slice(2))
  installCleanup()
  if (!existsSync(join(repoRoot, 'dist', 'cli', 'main.js'))) {
    throw new Error('dist/ is missing: run `npm run build` first (npm run bench does it for you)')
  }
  const loadAtStart = loads()
  const dataDir = await mkdtemp(join(tmpdir(), 'studio-gateway-bench-'))
  // Also on Ctrl-C, which exits without reaching the finally below.
  process.on('exit', () => rmSync(dataDir, { recursive: true, force: true }))
  const load = startLoadGenerator()
  try {
    const seed = await seedStore(dataDir)
    const runner = new ScenarioRunner(settings, load, seed, dataDir)

    if (settings.profile) {
      const profilesDir = join(repoRoot, 'bench', 'profiles')
      mkdirSync(profilesDir, { recursive: true })
      for (const scenario of settings.selected) {
        const text = await runner.profile(scenario, profilesDir)
        if (text === undefined) continue
        const summaryFile = join(profilesDir, `${scenario.name}.md`)
        writeFileSync(summaryFile, text)
        process.stdout.write(`\n${text}\n`)
        say(`wrote ${relative(process.cwd(), summaryFile)}`)
      }
      return
    }

    const results: ScenarioResult[] = []
    for (const scenario of settings.selected) results.push(await runner.run(scenario))

    process.stdout.write('\n## Targets\n\n')
    process.stdout.write(`${targetsTable(evaluateTargets(results))}\n\n## Summary\n\n${summaryTable(results)}\n`)
    for (const result of results) {
      if (result.skipped !== undefined) continue
      process.stdout.write(`\n### ${result.name}\n\n${roundsTable(result)}\n`)
      for (const note of result.notes) process.stdout.write(`- ${note}\n`)
      if (mediansOf(result).unexpected > 0) process.stdout.write('(unexpected answers: this scenario is not valid)\n')
    }

    if (settings.write) {
      const cpu = cpus()
      const info = {
        date: new Date().toISOString(),
        machine:
          `${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown CPU'}), ${fmt(totalmem() / 2 ** 30, 1)} GB RAM, ` +
          `${type()} ${release()}; load average (1 / 5 / 15 min) ${loadAtStart} at the start, ${loads()} at the end`,
        node: process.version,
        commit: gitCommit(),
        command: ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' '),
        settings: [
          `Load: autocannon ${packageVersion('autocannon')} in its own process, ${settings.connections} connections, ` +
            `pipelining 1, ${settings.warmupS} s warm-up per server, then ${settings.rounds} rounds of ${settings.durationS} s ` +
            'per server, alternating gateway / bare / floor. Latencies are recorded by the harness in 10 µs buckets.',
          `Gateway: \`node ${PRODUCTION_NODE_FLAGS.join(' ')} bin/studio-gateway.js serve\` (compiled dist/; the flags ` +
            'of the production start command), embedded SQLite store in a fresh temporary ' +
            'DATA_DIR, NODE_ENV=production, RATE_LIMIT_MAX and RATE_LIMIT_UNAUTH_MAX 1 000 000 000 per minute; its ' +
            'stdout (the access log at info) is a pipe the harness drains and discards.',
          `Bare: Fastify ${packageVersion('fastify')}, logger off, one route answering the body the gateway gave for ` +
            'the same request (bench/bare-server.js).',
          'Contract floor: the same, plus every response header the gateway sent (same names, values of the same ' +
            'shape, a fresh X-Request-Id per request), set from an async onRequest hook, with an async onResponse ' +
            'hook (bench/floor-server.js): what the contract costs, apart from what our code costs.',
          'RSS peak: VmHWM of the server process during the round (/proc/PID/status, reset with clear_refs at the start of each round).',
          process.env.REDIS_URL
            ? `REDIS_URL: set (the redis scenario only), REDIS_KEY_PREFIX ${REDIS_KEY_PREFIX}, its keys deleted afterwards.`
            : 'REDIS_URL: not set.',
          ...(settings.gatewayNodeArgs.length > 0
            ? [`Extra node flags for the gateway: \`${settings.gatewayNodeArgs.join(' ')}\`.`]
            : []),
          'Servers, load generator and harness all share the same cores.',
        ],
        notes: [],
      }
      const previous = existsSync(settings.resultsFile) ? readFileSync(settings.resultsFile, 'utf8') : undefined
      writeFileSync(settings.resultsFile, renderResultsFile(info, results, previous))
      say(`\nwrote ${relative(process.cwd(), settings.resultsFile)}`)
    }
  } finally {
    load.close()
    killAll()
    await rm(dataDir, { recursive: true, force: true })
  }
}

main().catch((error: unknown) => {
  say(`bench: ${error instanceof Error ? error.message : String(error)}`)
  killAll()
  process.exitCode = 1
})
