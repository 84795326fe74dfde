import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import t from 'tap'
import { POSTGRES_SKIP_REASON, testDatabaseUrl } from './helpers/database.js'
import { bearer, rememberSecret, startGateway, type TestGateway } from './helpers/gateway.js'
import { sharedRedisUrl, spawnRedisServer, uniquePrefix } from './helpers/redis.js'

/**
 * Revocation, roll and expiry reach every instance within a second (issue 17): two gateways on one
 * store, each with a key cache far longer than that (KEY_CACHE_TTL 30 s), so only the pushed
 * invalidation can explain a refusal within the second; with the channel cut, the cache's TTL
 * bounds it instead.
 */

const LONG_CACHE = { KEY_CACHE_TTL: '30s' }
const noPostgres = testDatabaseUrl === undefined ? POSTGRES_SKIP_REASON : false
const noRedis = sharedRedisUrl === undefined ? 'REDIS_URL is not set' : false

const keyOf = async (gw: TestGateway, secret: string) =>
  (await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })).statusCode

/** How long after `since` the gateway first refuses the secret (401), polling until `withinMs` has passed. */
async function refusedWithin(
  gw: TestGateway,
  secret: string,
  since: number,
  withinMs: number,
): Promise<number | undefined> {
  for (;;) {
    const status = await keyOf(gw, secret)
    const elapsed = Date.now() - since
    if (status === 401) return elapsed
    if (elapsed > withinMs) return undefined
    await sleep(25)
  }
}

/** Two instances on one store; `b` has verified a fresh key (it is in b's cache). */
async function twoInstances(t: Parameters<typeof startGateway>[0], env: Record<string, string>) {
  const a = await startGateway(t, { env })
  const b = await startGateway(t, { env, storeEnv: a.storeEnv })
  const admin = await a.key()
  const create = await a.app.inject({
    method: 'POST',
    url: '/v1/keys',
    headers: bearer(admin.secret),
    payload: { name: 'victim', scopes: ['studio:read'] },
  })
  const victim = create.json() as { id: string; secret: string }
  rememberSecret(victim.secret)
  t.equal(await keyOf(b, victim.secret), 200, 'the second instance accepts (and caches) the key')
  const act = async (action: 'revoke' | 'roll', payload?: object) => {
    const res = await a.app.inject({
      method: 'POST',
      url: `/v1/keys/${victim.id}/${action}`,
      headers: bearer(admin.secret),
      ...(payload ? { payload } : {}),
    })
    if (res.statusCode === 201) rememberSecret(res.json().secret)
    return res
  }
  return { a, b, victim, act }
}

async function revocationReachesTheOther(t: Parameters<typeof startGateway>[0], env: Record<string, string>) {
  const { b, victim, act } = await twoInstances(t, { ...LONG_CACHE, ...env })
  const revoked = await act('revoke')
  t.equal(revoked.statusCode, 200)
  const after = await refusedWithin(b, victim.secret, Date.now(), 1000)
  t.ok(after !== undefined, `the other instance refuses the revoked key within 1 s (after ${after} ms)`)
}

t.test('on the embedded store or PostgreSQL alone: revocation reaches a second instance within 1 s', async (t) => {
  await revocationReachesTheOther(t, {})
})

t.test(
  'on PostgreSQL + Redis: revocation reaches a second instance within 1 s',
  { skip: noPostgres || noRedis },
  async (t) => {
    await revocationReachesTheOther(t, { REDIS_URL: sharedRedisUrl as string, REDIS_KEY_PREFIX: uniquePrefix() })
  },
)

t.test('a roll with no grace period reaches a second instance within 1 s', async (t) => {
  const { b, victim, act } = await twoInstances(t, LONG_CACHE)
  t.equal((await act('roll', { gracePeriod: 0 })).statusCode, 201)
  const after = await refusedWithin(b, victim.secret, Date.now(), 1000)
  t.ok(after !== undefined, `the old secret is refused there within 1 s (after ${after} ms)`)
})

t.test(
  'with the push channel cut, a revocation still reaches the other instance within KEY_CACHE_TTL',
  { skip: noPostgres },
  async (t) => {
    const redis = await spawnRedisServer(t)
    const env = { KEY_CACHE_TTL: '3s', REDIS_URL: redis.url, REDIS_KEY_PREFIX: uniquePrefix() }
    const { b, victim, act } = await twoInstances(t, env)
    await redis.kill()
    const since = Date.now()
    t.equal((await act('revoke')).statusCode, 200, 'revoking works with the channel down')
    t.equal(await keyOf(b, victim.secret), 200, 'the other instance did not hear of it: its cache still holds the key')
    const after = await refusedWithin(b, victim.secret, since, 3000 + 1000)
    t.ok(after !== undefined, `refused within KEY_CACHE_TTL (after ${after} ms)`)
  },
)

t.test(
  'the PostgreSQL channel comes back after its connection is lost, and empties the caches',
  { skip: noPostgres },
  async (t) => {
    const { a, b, victim } = await twoInstances(t, LONG_CACHE)
    // Cut b's listening connection (found by the LISTEN of its schema), then revoke behind its back
    // (straight in the store: no announcement at all).
    const schema = new URL(b.storeEnv.DATABASE_URL as string).searchParams.get('options')?.split('=')[1] as string
    const admin = new pg.Client({ connectionString: testDatabaseUrl })
    await admin.connect()
    t.teardown(() => admin.end())
    const { rowCount } = await admin.query(
      `select pg_terminate_backend(pid) from pg_stat_activity
      where application_name = 'studio-gateway key invalidations' and query like $1`,
      [`%${schema}%`],
    )
    t.ok((rowCount ?? 0) >= 2, 'both instances were listening')
    await a.store.keys.revoke(victim.id, new Date().toISOString())
    const after = await refusedWithin(b, victim.secret, Date.now(), 3000)
    t.ok(after !== undefined, `once listening again, the instance forgot what it cached (after ${after} ms)`)
  },
)

t.test('keys revoke on the command line reaches a running instance within 1 s', { skip: noPostgres }, async (t) => {
  const { main } = await import('../cli/main.js')
  const { PassThrough } = await import('node:stream')
  const { b, victim } = await twoInstances(t, LONG_CACHE)
  const err = new PassThrough()
  let stderr = ''
  err.on('data', (chunk) => {
    stderr += chunk
  })
  const code = await main(['keys', 'revoke', victim.id], { out: new PassThrough(), err, env: b.storeEnv })
  t.equal(code, 0, stderr)
  const after = await refusedWithin(b, victim.secret, Date.now(), 1000)
  t.ok(after !== undefined, `refused within 1 s (after ${after} ms)`)
})
