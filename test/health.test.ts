import t from 'tap'
import { testEngine } from './helpers/database.js'
import { bearer, errorOf, startGateway, type TestGateway } from './helpers/gateway.js'
import { parseExposition } from './helpers/prometheus.js'
import { sharedRedisUrl, spawnRedisServer, uniquePrefix } from './helpers/redis.js'

t.test('/healthz: 200 without a key and without touching any dependency', async (t) => {
  const gw = await startGateway(t)
  let checks = 0
  gw.app.dependencies.register('upstream', async () => {
    checks++
    throw new Error('down')
  })
  for (const headers of [{}, bearer('sk_live_not_a_real_key'), { 'x-api-key': 'garbage' }]) {
    const res = await gw.app.inject({ url: '/healthz', headers })
    t.equal(res.statusCode, 200, 'a key, good or bad, changes nothing')
    t.same(res.json(), { status: 'ok' })
    t.equal(res.headers['cache-control'], 'no-store')
  }
  t.equal((await gw.app.inject({ method: 'HEAD', url: '/healthz' })).statusCode, 200, 'HEAD works too')
  t.equal(checks, 0, 'a dependency being down does not make the process unhealthy')
})

t.test('/readyz: 200 with each dependency when all are up', async (t) => {
  const gw = await startGateway(t)
  const res = await gw.app.inject({ url: '/readyz' })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { status: 'ready', dependencies: { [testEngine]: { status: 'up', latencyMs: Number } } })
  t.equal(res.headers['cache-control'], 'no-store')
})

t.test('/readyz flips to 503 unavailable when a dependency is down, and back when it returns', async (t) => {
  const gw = await startGateway(t)
  let upstreamUp = true
  gw.app.dependencies.register('upstream', async () => {
    if (!upstreamUp) throw new Error('connect ECONNREFUSED 10.0.0.7:8080')
  })
  t.equal((await gw.app.inject({ url: '/readyz' })).statusCode, 200)

  upstreamUp = false
  for (let probe = 0; probe < 2; probe++) {
    const res = await gw.app.inject({ url: '/readyz', headers: { 'x-request-id': `probe-${probe}` } })
    t.equal(res.statusCode, 503)
    const error = errorOf(t, res)
    t.equal(error.code, 'unavailable')
    t.equal(error.message, 'not ready: upstream is down', 'the message names the dependency')
    t.same(Object.keys(error).sort(), ['code', 'message', 'requestId'], 'the envelope keeps its shape')
    t.match(res.json().dependencies, { [testEngine]: { status: 'up' }, upstream: { status: 'down' } })
    t.match(res.headers['retry-after'], /^\d+$/)
    t.equal(res.headers['cache-control'], 'no-store')
    t.notMatch(res.body, /10\.0\.0\.7|ECONNREFUSED/, 'the reason stays in the log: it can name internal hosts')
  }
  const downLogs = gw.logs.filter((line) => line.msg === 'dependency is down: not ready')
  t.equal(downLogs.length, 1, 'an outage is logged once, not on every probe')
  t.match(downLogs[0], { level: 40, dependency: 'upstream', reason: /ECONNREFUSED/ })

  upstreamUp = true
  const back = await gw.app.inject({ url: '/readyz' })
  t.equal(back.statusCode, 200, 'ready again, without a restart')
  t.match(back.json(), { dependencies: { upstream: { status: 'up' } } })
  t.ok(gw.logs.some((line) => line.msg === 'dependency is back' && line.dependency === 'upstream'))

  const metrics = parseExposition((await gw.app.inject({ url: '/metrics' })).body)
  t.equal(metrics.value('studio_gateway_dependency_check_failures_total', { dependency: 'upstream' }), 2)
  t.equal(metrics.value('studio_gateway_dependency_check_failures_total', { dependency: testEngine }), 0)
  t.equal(metrics.value('studio_gateway_dependency_up', { dependency: 'upstream' }), 1)
})

t.test('/readyz names every dependency that is down, and answers in bounded time when one hangs', async (t) => {
  const gw = await startGateway(t)
  gw.app.dependencies.register('redis', () => new Promise(() => {}))
  gw.app.dependencies.register('upstream', async () => {
    throw new Error('refused')
  })
  const started = Date.now()
  const res = await gw.app.inject({ url: '/readyz' })
  const elapsed = Date.now() - started
  t.equal(res.statusCode, 503)
  t.ok(elapsed < 5000, `a hung check does not hang the probe (${elapsed} ms)`)
  t.equal(errorOf(t, res).message, 'not ready: redis, upstream are down')
  t.match(res.json().dependencies, {
    redis: { status: 'down' },
    upstream: { status: 'down' },
    [testEngine]: { status: 'up' },
  })
})

t.test('/readyz: a real dependency failure (the store closed) is 503 naming it', async (t) => {
  const gw = await startGateway(t)
  await gw.store.close()
  const res = await gw.app.inject({ url: '/readyz' })
  t.equal(res.statusCode, 503)
  t.equal(errorOf(t, res).message, `not ready: ${testEngine} is down`)
})

t.test('concurrent probes share one round of checks', async (t) => {
  const gw = await startGateway(t)
  let calls = 0
  gw.app.dependencies.register('upstream', async () => {
    calls++
    await new Promise((resolve) => setTimeout(resolve, 50))
  })
  const answers = await Promise.all(Array.from({ length: 10 }, () => gw.app.inject({ url: '/readyz' })))
  t.same(
    answers.map((res) => res.statusCode),
    Array(10).fill(200),
  )
  t.equal(calls, 1, 'ten probes at once ran the check once')
  await gw.app.inject({ url: '/readyz' })
  t.equal(calls, 2, 'a later probe checks again')
})

t.test('the probes and /metrics stay out of the access log', async (t) => {
  const gw = await startGateway(t)
  for (const url of ['/healthz', '/readyz', '/metrics', '/v1/studios']) await gw.app.inject({ url })
  const logged = gw.logs.filter((line) => line.msg === 'request completed').map((line) => line.route)
  t.same(logged, ['/v1/studios'])
})

/** Probes /readyz until it answers `status`, or fails the test after 10 s. */
async function readinessBecomes(gw: TestGateway, status: number) {
  const deadline = Date.now() + 10_000
  for (;;) {
    const res = await gw.app.inject({ url: '/readyz' })
    if (res.statusCode === status || Date.now() > deadline) return res
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

if (!sharedRedisUrl) t.comment('Redis readiness suite skipped: REDIS_URL is not set')

t.test(
  'Redis suite: /readyz follows a real Redis going down and coming back, and the limiter fails open meanwhile',
  { skip: sharedRedisUrl ? false : 'REDIS_URL is not set' },
  async (t) => {
    // A redis-server of this test's own: the shared one is never stopped.
    const redis = await spawnRedisServer(t)
    const gw = await startGateway(t, { env: { REDIS_URL: redis.url, REDIS_KEY_PREFIX: uniquePrefix() } })
    const { secret } = await gw.key()
    const up = await gw.app.inject({ url: '/readyz' })
    t.equal(up.statusCode, 200)
    t.match(up.json().dependencies, { [testEngine]: { status: 'up' }, redis: { status: 'up' } })

    await redis.kill()
    const down = await readinessBecomes(gw, 503)
    t.equal(down.statusCode, 503, 'not ready while Redis is down')
    t.equal(errorOf(t, down).message, 'not ready: redis is down')
    t.match(down.json().dependencies, { [testEngine]: { status: 'up' }, redis: { status: 'down' } })
    t.equal(
      (await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })).statusCode,
      200,
      'the API keeps serving: the limiter fails open',
    )
    const during = parseExposition((await gw.app.inject({ url: '/metrics' })).body)
    t.ok((during.value('studio_gateway_rate_limit_fail_open_total') ?? 0) >= 1, 'fail-open is counted')
    t.ok((during.value('studio_gateway_rate_limit_redis_outages_total') ?? 0) >= 1, 'so is the outage')
    t.equal(during.value('studio_gateway_dependency_up', { dependency: 'redis' }), 0)

    await redis.start()
    const back = await readinessBecomes(gw, 200)
    t.equal(back.statusCode, 200, 'ready again once Redis is back, without a restart')
    t.match(back.json().dependencies, { redis: { status: 'up' } })
  },
)
