import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { chownSync, existsSync, readdirSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { startReferenceUpstream } from '../examples/reference-upstream.js'
import { errorCodes } from '../lib/errors.js'
import { mintKey } from '../lib/mint-key.js'
import { openPostgresStore } from '../stores/postgres.js'
import { freePort, installCleanup, killAll, type Server, startServer, track } from './processes.js'
import { hostileSoak } from './soak-hostile.js'

/**
 * `npm run soak`: sustained load on two gateway processes (studios on PostgreSQL; studios from the
 * reference upstream) while their dependencies are stopped and restarted — PostgreSQL (the key
 * store), Redis (the rate-limit counters), the upstream studio service — each a private instance
 * on a loopback port in a temporary directory, never a shared one. Prints the answers per status
 * and code, checks that each was the envelope or a declared success, that every acknowledged
 * write happened exactly once, and how long service took to come back after each dependency did.
 * Exits 1 when a check fails. See README, "Soak test". With --hostile: the public edge under
 * hostile clients instead (bench/soak-hostile.ts).
 */

const { values: options } = parseArgs({
  options: {
    duration: { type: 'string', default: process.env.SOAK_SECONDS ?? '60' },
    concurrency: { type: 'string', default: '12' },
    // The public edge under hostile clients instead (bench/soak-hostile.ts, docs/edge.md).
    hostile: { type: 'boolean', default: false },
  },
})
const DURATION_MS = Number(options.duration) * 1000
const CONCURRENCY = Number(options.concurrency)
/** How long each dependency stays down. */
const OUTAGE_MS = Math.min(4000, DURATION_MS / 10)
/** A request without an answer by then counts as a hang. */
const REQUEST_TIMEOUT_MS = 10_000
const PROBE_INTERVAL_MS = 25
const ALL_SCOPES = ['studio:read', 'stream:read', 'stream:golive'] as const

installCleanup()

// ---------------------------------------------------------------- private dependencies

interface Dependency {
  readonly name: string
  stop(): Promise<void>
  start(): Promise<void>
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return
    await sleep(25)
  }
  throw new Error(`${what} did not come up within ${timeoutMs} ms`)
}

/** Exits, waiting for it. */
async function ended(child: ChildProcess | undefined, signal: NodeJS.Signals) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill(signal)
  await exited
}

async function privateRedis(): Promise<Dependency & { url: string }> {
  const port = await freePort()
  const dir = await mkdtemp(join(tmpdir(), 'soak-redis-'))
  let child: ChildProcess | undefined
  const ping = () =>
    new Promise<boolean>((resolve) => {
      const probe = spawn('redis-cli', ['-p', String(port), 'ping'], { stdio: ['ignore', 'pipe', 'ignore'] })
      let out = ''
      probe.stdout.on('data', (chunk) => {
        out += chunk
      })
      probe.on('exit', () => resolve(out.trim() === 'PONG'))
    })
  const start = async () => {
    child = track(
      spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
        cwd: dir,
        stdio: 'ignore',
      }),
    )
    await waitFor(ping, 'redis-server')
  }
  await start()
  return { name: 'redis', url: `redis://127.0.0.1:${port}`, start, stop: () => ended(child, 'SIGKILL') }
}

function postgresBin(): string {
  const root = '/usr/lib/postgresql'
  const version = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))[0]
    : undefined
  if (version === undefined) throw new Error(`no PostgreSQL server binaries under ${root}`)
  return join(root, version, 'bin')
}

/** initdb + postgres in a temporary directory (as the `postgres` user when run as root: it refuses root). */
async function privatePostgres(): Promise<Dependency & { url: string; remove(): Promise<void> }> {
  const bin = postgresBin()
  const port = await freePort()
  const dir = await mkdtemp(join(tmpdir(), 'soak-postgres-'))
  const asUser: { uid?: number; gid?: number } = {}
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString())
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString())
    chownSync(dir, uid, gid)
    Object.assign(asUser, { uid, gid })
  }
  const data = join(dir, 'data')
  execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync'], {
    ...asUser,
    stdio: 'ignore',
  })
  let child: ChildProcess | undefined
  const start = async () => {
    child = track(
      spawn(
        join(bin, 'postgres'),
        ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'],
        { ...asUser, stdio: 'ignore' },
      ),
    )
    await waitFor(async () => {
      execFileSync(join(bin, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
      return true
    }, 'postgres')
  }
  await start()
  return {
    name: 'postgres',
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start,
    // Fast shutdown: sessions are cut, in-flight transactions roll back.
    stop: () => ended(child, 'SIGINT'),
    remove: () => rm(dir, { recursive: true, force: true }),
  }
}

// ---------------------------------------------------------------- the answers

const counts = new Map<string, number>()
const problems: string[] = []
let answered = 0

function record(status: number, code: string | undefined) {
  const key = `${status} ${code ?? (status === 200 ? 'ok' : '-')}`
  counts.set(key, (counts.get(key) ?? 0) + 1)
}

interface Answer {
  readonly status: number
  readonly code: string | undefined
  readonly body: unknown
  readonly headers: Headers
}

/** Sends one request; checks that the answer is the envelope or a declared success. */
async function call(base: string, method: string, path: string, headers: Record<string, string>, body?: string) {
  let response: Response
  try {
    response = await fetch(base + path, {
      method,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    })
  } catch (error) {
    problems.push(`${method} ${path}: no answer (${(error as Error).message})`)
    record(0, 'no-answer')
    return undefined
  }
  answered++
  const text = await response.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  const requestId = response.headers.get('x-request-id')
  const error = (json as { error?: { code?: string; requestId?: string } } | undefined)?.error
  let code: string | undefined
  if (response.status === 200) {
    if (json === undefined || error !== undefined) problems.push(`${method} ${path}: a 200 that is not a resource`)
  } else if (!error || !errorCodes.includes(error.code as never) || error.requestId !== requestId) {
    problems.push(`${method} ${path}: a ${response.status} that is not the envelope: ${text.slice(0, 120)}`)
    code = 'NOT-AN-ENVELOPE'
  } else {
    code = error.code
    if (code === 'internal') problems.push(`${method} ${path}: 500 internal`)
  }
  if (!requestId) problems.push(`${method} ${path}: no X-Request-Id`)
  record(response.status, code)
  return { status: response.status, code, body: json, headers: response.headers } satisfies Answer
}

// ---------------------------------------------------------------- the run

async function main() {
  const started = Date.now()
  const postgres = await privatePostgres()
  const redis = await privateRedis()
  const upstream = await startReferenceUpstream()
  const upstreamDependency: Dependency = {
    name: 'upstream',
    stop: () => upstream.stop(),
    start: () => upstream.start(),
  }

  // Keys and studios, straight into the store.
  const store = await openPostgresStore(postgres.url)
  const keyOf = async (
    scopes: readonly (typeof ALL_SCOPES)[number][],
    rateLimit?: { max: number; windowMs: number },
  ) => {
    const { record: key, secret } = mintKey({
      accountId: 'acct_soak',
      scopes,
      rateLimits: rateLimit ? [rateLimit] : null,
    })
    await store.keys.insert(key)
    return secret
  }
  const full = await keyOf(ALL_SCOPES)
  const readOnly = await keyOf(['studio:read'])
  const limited = await keyOf(ALL_SCOPES, { max: 5, windowMs: 1000 })
  const storeStudios = [
    (await store.studios.createStudio({ accountId: 'acct_soak', name: 'Store A' })).id,
    (await store.studios.createStudio({ accountId: 'acct_soak', name: 'Store B' })).id,
  ]
  await store.close()
  const upstreamStudios = [
    upstream.addStudio('acct_soak', 'Upstream A').id,
    upstream.addStudio('acct_soak', 'Upstream B').id,
  ]

  const common = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'error',
    HOST: '127.0.0.1',
    DATABASE_URL: postgres.url,
    REDIS_URL: redis.url,
    WRITES_ENABLED: 'true',
    // Short, so that key verification needs the store during its outage, not the cache.
    KEY_CACHE_TTL: '250ms',
    RATE_LIMIT_MAX: '1000000',
    RATE_LIMIT_UNAUTH_MAX: '1000000',
    UPSTREAM_TIMEOUT: '1s',
  }
  const gateways: Server[] = [
    await startServer({
      name: 'gateway (store)',
      args: ['bin/studio-gateway.js', 'serve'],
      env: common,
      port: await freePort(),
    }),
    await startServer({
      name: 'gateway (upstream)',
      args: ['bin/studio-gateway.js', 'serve'],
      env: { ...common, UPSTREAM_URL: upstream.url },
      port: await freePort(),
    }),
  ]
  const [onStore, onUpstream] = gateways as [Server, Server]
  const auth = (secret: string) => ({ authorization: `Bearer ${secret}` })

  let running = true

  // Mixed traffic: valid reads, invalid calls, and a key over its budget.
  const traffic: Array<[number, () => Promise<unknown>]> = []
  for (const [gateway, studios] of [
    [onStore, storeStudios],
    [onUpstream, upstreamStudios],
  ] as const) {
    const base = gateway.url
    const studio = studios[0] as string
    traffic.push(
      [4, () => call(base, 'GET', '/v1/studios?limit=5', auth(full))],
      [4, () => call(base, 'GET', `/v1/studios/${studio}`, auth(full))],
      [4, () => call(base, 'GET', `/v1/studios/${studio}/stream`, auth(full))],
      [2, () => call(base, 'GET', `/v1/studios/${studio}/sessions?limit=3`, auth(full))],
      [2, () => call(base, 'GET', '/v1/key', { 'x-api-key': full })],
      [1, () => call(base, 'GET', '/v1/studios', {})],
      [1, () => call(base, 'GET', '/v1/studios', auth('sk_live_notAKeyAtAll'))],
      [1, () => call(base, 'GET', `/v1/studios/${studio}/stream`, auth(readOnly))],
      [1, () => call(base, 'GET', '/v1/studios?limit=abc', auth(full))],
      [1, () => call(base, 'GET', '/v1/studios/std_nope', auth(full))],
      [1, () => call(base, 'GET', '/v1/nowhere', auth(full))],
      [1, () => call(base, 'POST', `/v1/studios/${studio}/stream/go-live`, auth(full), '{"title":')],
      [3, () => call(base, 'GET', '/v1/studios', auth(limited))],
    )
  }
  const totalWeight = traffic.reduce((sum, [weight]) => sum + weight, 0)
  const pick = () => {
    let at = Math.random() * totalWeight
    for (const [weight, send] of traffic) {
      at -= weight
      if (at < 0) return send
    }
    return (traffic[0] as [number, () => Promise<unknown>])[1]
  }
  const readers = Array.from({ length: CONCURRENCY }, async () => {
    while (running) await pick()()
  })

  // Writers: per studio, go-live then go-offline, each with its own Idempotency-Key, retried with
  // the same key until acknowledged. Some acknowledged writes are sent once more to check the replay.
  const acknowledged = new Map<string, string[]>()
  const replays = { checked: 0, wrong: 0 }
  const write = async (base: string, studio: string, action: 'go-live' | 'go-offline', title?: string) => {
    const key = randomUUID()
    const body = title === undefined ? undefined : JSON.stringify({ title })
    const headers = { ...auth(full), 'idempotency-key': key }
    for (;;) {
      const answer = await call(base, 'POST', `/v1/studios/${studio}/stream/${action}`, headers, body)
      if (answer?.status === 200) {
        if (Math.random() < 0.3) {
          const again = await call(base, 'POST', `/v1/studios/${studio}/stream/${action}`, headers, body)
          if (again?.status === 200) {
            replays.checked++
            const same = JSON.stringify(again.body) === JSON.stringify(answer.body)
            if (!same || again.headers.get('idempotent-replayed') !== 'true') replays.wrong++
          }
        }
        return answer
      }
      await sleep(100)
    }
  }
  const writers = [
    ...storeStudios.map((studio) => [onStore.url, studio] as const),
    ...upstreamStudios.map((studio) => [onUpstream.url, studio] as const),
  ].map(async ([base, studio]) => {
    const titles: string[] = []
    acknowledged.set(studio, titles)
    while (running) {
      const title = `op-${randomUUID()}`
      await write(base, studio, 'go-live', title)
      titles.push(title)
      await write(base, studio, 'go-offline')
    }
  })

  // Probes: for each dependency, a request that needs it, every 25 ms, to time the recovery.
  const probes: Record<string, () => Promise<boolean>> = {
    postgres: async () =>
      (await call(onStore.url, 'GET', `/v1/studios/${storeStudios[1]}`, auth(full)))?.status === 200,
    upstream: async () =>
      (await call(onUpstream.url, 'GET', `/v1/studios/${upstreamStudios[1]}`, auth(full)))?.status === 200,
    // Redis is needed for shared counting, not for answers (limits fail open): it is back when
    // the gateways say so.
    redis: async () => {
      const ready = await Promise.all(
        gateways.map((g) => fetch(`${g.url}/readyz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status)),
      )
      return ready.every((status) => status === 200)
    },
  }
  const recoveries: Array<{ dependency: string; downMs: number; recoveryMs: number }> = []

  const outage = async (dependency: Dependency) => {
    const downAt = Date.now()
    await dependency.stop()
    await sleep(OUTAGE_MS)
    await dependency.start()
    const backAt = Date.now()
    // Recovered at the first of a run of 10 consecutive successful probes (250 ms of service).
    let firstOk: number | undefined
    let streak = 0
    while (streak < 10 && Date.now() - backAt < 30_000) {
      const at = Date.now()
      const ok = await probes[dependency.name]?.().catch(() => false)
      if (ok) {
        firstOk ??= at
        streak++
      } else {
        firstOk = undefined
        streak = 0
      }
      await sleep(PROBE_INTERVAL_MS)
    }
    recoveries.push({
      dependency: dependency.name,
      downMs: backAt - downAt,
      recoveryMs: firstOk === undefined ? Number.POSITIVE_INFINITY : Math.max(0, firstOk - backAt),
    })
  }

  const loadStart = Date.now()
  const slot = DURATION_MS / 4
  for (const dependency of [postgres, redis, upstreamDependency]) {
    await sleep(Math.max(0, loadStart + slot * (recoveries.length + 0.5) - Date.now()))
    await outage(dependency)
  }
  await sleep(Math.max(0, loadStart + DURATION_MS - Date.now()))
  running = false
  await Promise.all([...readers, ...writers])

  // Every acknowledged go-live must be exactly one session (titled with its op id), no more.
  let lost = 0
  let doubled = 0
  let unexpected = 0
  for (const [base, studios] of [
    [onStore.url, storeStudios],
    [onUpstream.url, upstreamStudios],
  ] as const) {
    for (const studio of studios) {
      const titles: string[] = []
      let cursor: string | null = null
      do {
        const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`
        const page = (await call(base, 'GET', `/v1/studios/${studio}/sessions?limit=100${query}`, auth(full)))
          ?.body as {
          data: Array<{ title: string }>
          nextCursor: string | null
        }
        titles.push(...page.data.map((session) => session.title))
        cursor = page.nextCursor
      } while (cursor !== null)
      const expected = new Set(acknowledged.get(studio))
      const seen = new Map<string, number>()
      for (const title of titles) seen.set(title, (seen.get(title) ?? 0) + 1)
      for (const title of expected) if (!seen.has(title)) lost++
      for (const [title, n] of seen) {
        if (!expected.has(title)) unexpected++
        else if (n > 1) doubled += n - 1
      }
    }
  }
  const writes = [...acknowledged.values()].reduce((sum, titles) => sum + titles.length, 0)

  for (const gateway of gateways) await gateway.stop()
  await upstream.close()
  killAll()
  await postgres.remove()

  // ------------------------------------------------------------ report
  const seconds = ((Date.now() - loadStart) / 1000).toFixed(1)
  const lines = [`soak: ${answered} answers in ${seconds} s (${CONCURRENCY} readers, 4 writers), two gateways`, '']
  lines.push('| status | code | answers |', '| --- | --- | --- |')
  for (const [key, n] of [...counts.entries()].sort()) {
    const [status, code] = key.split(' ', 2)
    lines.push(`| ${status} | ${code} | ${n} |`)
  }
  const notEnvelope = [...counts.entries()]
    .filter(([key]) => key.includes('NOT-AN-ENVELOPE') || key.startsWith('0 '))
    .reduce((sum, [, n]) => sum + n, 0)
  lines.push('', '| dependency | down for | service back after it returned |', '| --- | --- | --- |')
  for (const r of recoveries) lines.push(`| ${r.dependency} | ${r.downMs} ms | ${r.recoveryMs} ms |`)
  const slowest = Math.max(...recoveries.map((r) => r.recoveryMs))
  lines.push(
    '',
    `non-envelope answers (or none): ${notEnvelope}`,
    `acknowledged go-lives: ${writes}; lost: ${lost}; doubled: ${doubled}; sessions nobody acknowledged: ${unexpected}`,
    `replays checked: ${replays.checked}; wrong: ${replays.wrong}`,
    `slowest recovery: ${slowest} ms (bound 1000 ms)`,
  )
  const failed =
    problems.length > 0 || notEnvelope > 0 || lost + doubled + unexpected + replays.wrong > 0 || !(slowest <= 1000)
  for (const problem of problems.slice(0, 20)) lines.push(`problem: ${problem}`)
  lines.push(`soak: ${failed ? 'FAILED' : 'passed'} (${((Date.now() - started) / 1000).toFixed(1)} s in all)`)
  process.stdout.write(`${lines.join('\n')}\n`)
  process.exitCode = failed ? 1 : 0
}

if (options.hostile) await hostileSoak(DURATION_MS)
else await main()
