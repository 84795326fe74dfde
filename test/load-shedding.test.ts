import t, { type Test } from 'tap'
import { loadConfig } from '../config.js'
import { bearer, errorOf, startGateway, type TestGateway } from './helpers/gateway.js'
import { parseExposition } from './helpers/prometheus.js'

// Samples every 200 ms, and only the check under test on: a 200 ms window right after start also
// sees the start's own compilation as event-loop delay.
const FAST_SAMPLES = { SHED_SAMPLE_INTERVAL: '200ms', SHED_MAX_EVENT_LOOP_DELAY: '0' }

/** Polls until `url` answers `status` (the tests sample the load every 200 ms), or fails after 5 s. */
async function until(t: Test, gw: TestGateway, url: string, status: number, headers: Record<string, string> = {}) {
  const deadline = Date.now() + 5000
  for (;;) {
    const res = await gw.app.inject({ url, headers })
    if (res.statusCode === status) return res
    if (Date.now() > deadline) {
      t.fail(`${url} never answered ${status} (last: ${res.statusCode})`)
      return res
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Keeps the event loop busy for `ms`, as a runaway computation would. */
function blockLoop(ms: number) {
  const until = Date.now() + ms
  while (Date.now() < until) {
    // busy
  }
}

t.test('past the heap threshold, requests are shed with the 503 unavailable envelope', async (t) => {
  const gw = await startGateway(t, { env: { ...FAST_SAMPLES, SHED_MAX_HEAP_USED_MB: '1' } })
  const { secret } = await gw.key()
  const res = await until(t, gw, '/v1/studios', 503, { ...bearer(secret), 'x-request-id': 'shed-1' })
  const error = errorOf(t, res)
  t.equal(error.code, 'unavailable')
  t.equal(error.requestId, 'shed-1')
  t.match(error.message, /overloaded/)
  t.same(Object.keys(res.json()), ['error'], "the envelope, not the plugin's default body")
  t.notMatch(res.body, /statusCode|FST_UNDER_PRESSURE|Service Unavailable/)
  t.equal(res.headers['retry-after'], '5')
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.equal(res.headers['cache-control'], 'no-store')
  t.match(res.headers['content-type'], /^application\/json/)

  const verifications = () => gw.app.keyVerifier.stats.misses + gw.app.keyVerifier.stats.hits
  const before = verifications()
  t.equal((await gw.app.inject({ url: '/v1/studios' })).statusCode, 503, 'shed before the key is even looked at')
  t.equal((await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })).statusCode, 503)
  t.equal(verifications(), before, 'no key verification was spent on a shed request')
  t.match(
    res.headers['ratelimit-remaining'],
    /^\d+$/,
    "it shows the client IP's budget, as other refusals before a key",
  )

  for (const url of ['/healthz', '/readyz', '/metrics']) {
    t.equal((await gw.app.inject({ url })).statusCode, 200, `${url} is not shed`)
  }
  t.equal((await gw.app.inject({ url: '/nowhere' })).statusCode, 404, 'nor an unknown path: its 404 costs nothing')
  const metrics = parseExposition((await gw.app.inject({ url: '/metrics' })).body)
  t.ok((metrics.value('studio_gateway_shed_requests_total', { reason: 'heap_used' }) ?? 0) >= 3)
  t.equal(metrics.value('studio_gateway_shed_requests_total', { reason: 'rss' }), 0)
  t.ok((metrics.value('studio_gateway_errors_total', { code: 'unavailable' }) ?? 0) >= 3)
  const logged = gw.logs.filter((line) => line.msg === 'shedding load: refusing requests with 503 unavailable')
  t.equal(logged.length, 1, 'an episode is logged once, not per request')
  t.match(logged[0], { level: 40, reason: 'heap_used' })
})

t.test('past the RSS threshold, the same', async (t) => {
  const gw = await startGateway(t, { env: { ...FAST_SAMPLES, SHED_MAX_RSS_MB: '1' } })
  const res = await until(t, gw, '/v1/key', 503)
  t.equal(errorOf(t, res).code, 'unavailable')
  const metrics = parseExposition((await gw.app.inject({ url: '/metrics' })).body)
  t.ok((metrics.value('studio_gateway_shed_requests_total', { reason: 'rss' }) ?? 0) >= 1)
})

t.test('a blocked event loop sheds load, and serving resumes when it recovers', async (t) => {
  const gw = await startGateway(t, { env: { ...FAST_SAMPLES, SHED_MAX_EVENT_LOOP_DELAY: '100ms' } })
  const { secret } = await gw.key()
  await until(t, gw, '/v1/key', 200, bearer(secret))
  // Block the loop for 1.5 s, as a runaway computation would: the next sample sees the delay.
  blockLoop(1500)
  const shed = await until(t, gw, '/v1/key', 503, bearer(secret))
  t.equal(errorOf(t, shed).code, 'unavailable')
  await until(t, gw, '/v1/key', 200, bearer(secret))
  t.pass('served again once the loop caught up')
  const metrics = parseExposition((await gw.app.inject({ url: '/metrics' })).body)
  t.ok((metrics.value('studio_gateway_shed_requests_total', { reason: 'event_loop_delay' }) ?? 0) >= 1)
})

t.test('a single stall of the event loop, averaged over the default 5 s window, sheds nothing', async (t) => {
  const gw = await startGateway(t)
  const { secret } = await gw.key()
  blockLoop(1500) // a long GC or a paused VM looks like this
  const deadline = Date.now() + 6000
  while (Date.now() < deadline) {
    const res = await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })
    if (res.statusCode !== 200) {
      t.fail(`answered ${res.statusCode} after a single stall`)
      break
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
})

t.test('a loop too busy to tick twice in a sample window is not taken as an infinite delay', async (t) => {
  // @fastify/under-pressure reports a window whose histogram never ticked twice (it ticks every
  // 10 ms) as an infinite delay. The loop here is kept busy for 110 ms at a time, longer than the
  // 100 ms window, with only a turn between: a delay of about 110 ms, far under the 10 s threshold.
  const gw = await startGateway(t, {
    env: { SHED_SAMPLE_INTERVAL: '100ms', SHED_MAX_EVENT_LOOP_DELAY: '10s', SHED_MAX_HEAP_USED_MB: '0' },
  })
  const { secret } = await gw.key()
  const statuses = new Map<number, number>()
  for (let i = 0; i < 25; i++) {
    blockLoop(110)
    await new Promise((resolve) => setImmediate(resolve))
    const res = await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })
    statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
  }
  t.same(Object.fromEntries(statuses), { 200: 25 }, 'every request served')
  const metrics = parseExposition((await gw.app.inject({ url: '/metrics' })).body)
  t.equal(metrics.value('studio_gateway_shed_requests_total', { reason: 'event_loop_delay' }) ?? 0, 0, 'none shed')
})

t.test('the default thresholds: event loop 500 ms over 5 s, heap 90 % of V8 limit, RSS off', async (t) => {
  const { shedding } = loadConfig({})
  t.equal(shedding.sampleIntervalMs, 5000)
  t.equal(shedding.maxEventLoopDelayMs, 500)
  t.ok(shedding.maxHeapUsedBytes > 100 * 1024 * 1024, 'the heap threshold is a share of the real heap limit')
  t.equal(shedding.maxRssBytes, 0)
  const off = loadConfig({ SHED_MAX_EVENT_LOOP_DELAY: '0', SHED_MAX_HEAP_USED_MB: '0' }).shedding
  t.throws(
    () => loadConfig({ SHED_SAMPLE_INTERVAL: '50ms' }),
    /SHED_SAMPLE_INTERVAL/,
    'a window under 100 ms is refused',
  )
  t.match(off, { maxEventLoopDelayMs: 0, maxHeapUsedBytes: 0, maxRssBytes: 0 }, '0 turns each check off')
})
