import { randomBytes } from 'node:crypto'
import type { InjectOptions } from 'fastify'
import pg from 'pg'
import type { Test } from 'tap'
import t from 'tap'
import { freshSchema, POSTGRES_SKIP_REASON, testDatabaseUrl } from './helpers/database.js'
import { bearer, errorOf, startGateway, type TestGateway } from './helpers/gateway.js'
import { startTcpProxy, throughProxy } from './helpers/tcp-proxy.js'

// Faults of PostgreSQL with real SQLSTATEs, on a database and a role each test creates for
// itself (and drops): the shared server is never stopped and no other database is touched.
const skip = testDatabaseUrl === undefined ? POSTGRES_SKIP_REASON : false
if (skip) t.comment(skip)

/** STORE_TIMEOUT's default: a store fault is answered 503 within it (docs/store-faults.md). */
const STORE_TIMEOUT_MS = 1000
/** Scheduling on a shared, busy machine: timers fire late, not the design. */
const MARGIN_MS = 300
/** In a URL the server ignores (trust authentication): no log line may ever show it. */
const PASSWORD = 'not-a-real-secret'

/** Runs `statement` on the test database as the suite's (superuser) role. */
async function admin(statement: string, parameters: unknown[] = []) {
  const client = new pg.Client({ connectionString: testDatabaseUrl, connectionTimeoutMillis: 5000 })
  client.on('error', () => {})
  await client.connect()
  try {
    return await client.query(statement, parameters)
  } finally {
    await client.end()
  }
}

/** A new database owned by a new login role, both dropped at the end of `t`. */
async function ownDatabase(t: Test) {
  const name = `sg_fault_${process.pid}_${randomBytes(4).toString('hex')}`
  await admin(`create role "${name}" login`)
  t.teardown(() => admin(`drop role if exists "${name}"`))
  await admin(`create database "${name}" owner "${name}"`)
  t.teardown(() => admin(`drop database if exists "${name}" with (force)`))
  const url = new URL(testDatabaseUrl as string)
  url.username = name
  url.password = PASSWORD
  url.pathname = `/${name}`
  return { name, url: url.toString() }
}

/** Ends every connection to `database` (ours), as a restart or an operator would. */
async function dropConnections(database: string) {
  await admin('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1', [database])
  // Let the pool see its idle connections close.
  await new Promise((resolve) => setTimeout(resolve, 100))
}

async function timed(gw: TestGateway, url: string, secret?: string) {
  const started = performance.now()
  const res = await gw.app.inject({ url, headers: secret === undefined ? {} : bearer(secret) })
  return { res, ms: performance.now() - started }
}

t.test(
  'PostgreSQL refusing new connections (55000, 53300, 28000, 28P01, 57P03, 3D000): 503 unavailable within the bound, a cached key included; /readyz says so; served again once lifted',
  { skip },
  async (t) => {
    const database = await ownDatabase(t)
    const target = new URL(database.url)
    const proxy = await startTcpProxy(t, { host: target.hostname, port: Number(target.port || 5432) })
    const gw = await startGateway(t, { storeEnv: { DATABASE_URL: throughProxy(database.url, proxy) } })
    const cached = await gw.key()
    const studioId = await gw.studio('acct_test')
    const stream = `/v1/studios/${studioId}/stream`
    t.equal((await timed(gw, stream, cached.secret)).res.statusCode, 200, 'the key is cached from here on')
    // Never verified while the database answers (a failed verification is not cached).
    const uncached = await gw.key()

    const faults: { sqlstate: string; what: string; apply: () => Promise<void>; lift: () => Promise<void> }[] = [
      {
        sqlstate: '55000',
        what: 'the database does not allow connections',
        apply: async () => void (await admin(`alter database "${database.name}" allow_connections false`)),
        lift: async () => void (await admin(`alter database "${database.name}" allow_connections true`)),
      },
      {
        sqlstate: '53300',
        what: 'too many connections for the role',
        apply: async () => void (await admin(`alter role "${database.name}" connection limit 0`)),
        lift: async () => void (await admin(`alter role "${database.name}" connection limit -1`)),
      },
      {
        sqlstate: '28000',
        what: 'the role may not log in',
        apply: async () => void (await admin(`alter role "${database.name}" nologin`)),
        lift: async () => void (await admin(`alter role "${database.name}" login`)),
      },
      {
        sqlstate: '28P01',
        what: 'password authentication failed (answered by the proxy)',
        apply: async () =>
          proxy.refuse({ code: '28P01', message: `password authentication failed for user "${database.name}"` }),
        lift: async () => proxy.restore(),
      },
      {
        sqlstate: '57P03',
        what: 'the database system is starting up (answered by the proxy)',
        apply: async () => proxy.refuse({ code: '57P03', message: 'the database system is starting up' }),
        lift: async () => proxy.restore(),
      },
    ]

    const expectUnavailable = async (label: string) => {
      for (const [url, secret] of [
        [stream, cached.secret],
        ['/v1/key', uncached.secret],
      ] as const) {
        const { res, ms } = await timed(gw, url, secret)
        t.equal(res.statusCode, 503, `${label}: ${url} is 503${secret === cached.secret ? ' (key cached)' : ''}`)
        const error = errorOf(t, res)
        t.equal(error.code, 'unavailable')
        t.equal(res.headers['retry-after'], '1')
        t.notMatch(error.message, /connections|password|role|starting|exist|\d{5}/, 'no driver detail')
        t.ok(ms < STORE_TIMEOUT_MS + MARGIN_MS, `answered in ${Math.round(ms)} ms`)
      }
      const notReady = await timed(gw, '/readyz')
      t.equal(notReady.res.statusCode, 503, `${label}: /readyz is 503`)
      t.equal(errorOf(t, notReady.res).message, 'not ready: postgres is down')
    }

    for (const fault of faults) {
      await fault.apply()
      await dropConnections(database.name)
      await expectUnavailable(`${fault.sqlstate} (${fault.what})`)
      await fault.lift()
      t.equal((await timed(gw, stream, cached.secret)).res.statusCode, 200, `${fault.sqlstate} lifted: served again`)
    }

    await admin(`drop database "${database.name}" with (force)`)
    await expectUnavailable('3D000 (the database was dropped)')

    t.notOk(
      gw.logs.some((line) => line.level === 50),
      'nothing was logged as an unexpected error',
    )
    t.notMatch(gw.logText(), PASSWORD, 'the URL password never reaches the log')
    t.notMatch(gw.logText(), /"client":|"connectionParameters"|"_clients"/, 'nor the driver client attached to errors')
  },
)

t.test(
  'PostgreSQL pool saturated: every answer, 503 or not, comes within the bound (acquiring plus the statements)',
  { skip },
  async (t) => {
    const url = await freshSchema(t)
    const gw = await startGateway(t, { storeEnv: { DATABASE_URL: url }, env: { WRITES_ENABLED: 'true' } })
    const { secret } = await gw.key()
    const locked = await gw.studio('acct_test')
    const other = await gw.studio('acct_test')
    t.equal((await timed(gw, `/v1/studios/${other}/stream`, secret)).res.statusCode, 200)

    // Another session holds the stream row: every go-live on it waits for the lock while holding
    // one of the pool's connections, and the requests beyond the pool's size wait for one.
    const holder = new pg.Client({ connectionString: url })
    holder.on('error', () => {})
    await holder.connect()
    t.teardown(() => holder.end())
    await holder.query('begin')
    await holder.query('select * from streams where studio_id = $1 for update', [locked])

    const started = performance.now()
    const timings: { status: number; ms: number; what: string }[] = []
    const call = async (what: string, options: InjectOptions) => {
      const res = await gw.app.inject(options)
      timings.push({ status: res.statusCode, ms: performance.now() - started, what })
      return res
    }
    const goLive = { method: 'POST' as const, url: `/v1/studios/${locked}/stream/go-live`, headers: bearer(secret) }
    await Promise.all([
      ...Array.from({ length: 30 }, () => call('go-live on the locked row', goLive)),
      ...Array.from({ length: 10 }, () =>
        call('a read of another studio', { url: `/v1/studios/${other}/stream`, headers: bearer(secret) }),
      ),
    ])
    await holder.query('rollback')

    const slowest = Math.max(...timings.map((timing) => timing.ms))
    const writes = timings.filter((timing) => timing.what.startsWith('go-live'))
    t.ok(
      writes.every((timing) => timing.status === 503),
      `the go-lives are 503 (${writes.map((w) => w.status).join(' ')})`,
    )
    t.ok(
      timings.every((timing) => timing.status === 200 || timing.status === 503),
      'the reads are served or 503, never another answer',
    )
    t.ok(slowest < STORE_TIMEOUT_MS + MARGIN_MS, `the slowest answer came after ${Math.round(slowest)} ms`)
    t.comment(
      `answers after ${timings
        .map((timing) => Math.round(timing.ms))
        .sort((a, b) => a - b)
        .join(' ')} ms`,
    )

    const live = await gw.app.inject(goLive)
    t.equal(live.json().status, 'live', 'the pool recovers: the next go-live succeeds')
  },
)
