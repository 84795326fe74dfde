import t, { type Test } from 'tap'
import { errorCodes } from '../lib/errors.js'
import { LATENCY_BUCKETS } from '../lib/metrics.js'
import { bearer, errorOf, startGateway, type TestGateway } from './helpers/gateway.js'
import { parseExposition } from './helpers/prometheus.js'
import { listenLocally, rawRequest } from './helpers/raw-http.js'

async function scrape(t: Test, gw: TestGateway, headers: Record<string, string> = {}) {
  const res = await gw.app.inject({ url: '/metrics', headers })
  t.equal(res.statusCode, 200, '/metrics answers 200')
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/, 'in the Prometheus text format')
  return parseExposition(res.body)
}

t.test('requests are counted and timed by method, route pattern and status, never by raw URL', async (t) => {
  const gw = await startGateway(t)
  const { secret, accountId } = await gw.key()
  const studioId = await gw.studio(accountId)
  const calls = [
    { url: '/v1/studios', headers: bearer(secret) },
    { url: `/v1/studios/${studioId}`, headers: bearer(secret) },
    { url: `/v1/studios/${studioId}`, headers: bearer(secret) },
    { url: '/v1/studios/std_nobody', headers: bearer(secret) },
    { url: '/v1/studios' },
    { url: '/no/such/path/std_secretish' },
  ]
  for (const call of calls) await gw.app.inject(call)
  const metrics = await scrape(t, gw)

  t.equal(metrics.types.get('studio_gateway_http_requests_total'), 'counter')
  t.equal(metrics.types.get('studio_gateway_http_request_duration_seconds'), 'histogram')
  const count = (route: string, status: string) =>
    metrics.value('studio_gateway_http_requests_total', { method: 'GET', route, status })
  t.equal(count('/v1/studios', '200'), 1)
  t.equal(count('/v1/studios', '401'), 1)
  t.equal(count('/v1/studios/:studioId', '200'), 2, 'one series for every studio id')
  t.equal(count('/v1/studios/:studioId', '404'), 1)
  t.equal(count('unmatched', '404'), 1, 'an unknown path is "unmatched", not its URL')

  const labelValues = metrics.samples.flatMap((sample) => Object.values(sample.labels))
  t.notOk(
    labelValues.some((value) => value.includes(studioId) || value.includes('std_nobody') || value.includes('no/such')),
    'no raw path or id in any label',
  )

  // The histogram agrees with the counter and is cumulative.
  const labels = { method: 'GET', route: '/v1/studios/:studioId', status: '200' }
  const buckets = metrics.all('studio_gateway_http_request_duration_seconds_bucket', labels)
  t.same(
    buckets.map((bucket) => bucket.labels.le),
    [...LATENCY_BUCKETS.map(String), '+Inf'],
  )
  const counts = buckets.map((bucket) => bucket.value)
  t.same(
    counts,
    [...counts].sort((a, b) => a - b),
    'bucket counts never decrease',
  )
  t.equal(counts.at(-1), 2, 'the +Inf bucket holds every request')
  t.equal(metrics.value('studio_gateway_http_request_duration_seconds_count', labels), 2)
  const sum = metrics.value('studio_gateway_http_request_duration_seconds_sum', labels) ?? -1
  t.ok(sum > 0 && sum < 10, `the latency sum is in seconds (${sum})`)
})

t.test('error envelopes are counted by code, every code listed from the start', async (t) => {
  const gw = await startGateway(t)
  const { secret } = await gw.key({ scopes: ['studio:read'] })
  const before = await scrape(t, gw)
  for (const code of errorCodes) {
    t.equal(before.value('studio_gateway_errors_total', { code }), 0, `${code} starts at 0`)
  }
  await gw.app.inject({ url: '/v1/studios' })
  await gw.app.inject({ url: '/v1/studios', headers: bearer('sk_live_wrong') })
  await gw.app.inject({ url: '/v1/studios/std_x/stream', headers: bearer(secret) })
  await gw.app.inject({ url: '/v1/studios?limit=0', headers: bearer(secret) })
  await gw.app.inject({ url: '/v1/studios/%zz' })
  await gw.app.inject({ url: '/nowhere' })
  const after = await scrape(t, gw)
  t.equal(after.value('studio_gateway_errors_total', { code: 'invalid_key' }), 2)
  t.equal(after.value('studio_gateway_errors_total', { code: 'insufficient_scope' }), 1)
  t.equal(after.value('studio_gateway_errors_total', { code: 'invalid_request' }), 2, 'a bad limit and a bad URL')
  t.equal(after.value('studio_gateway_errors_total', { code: 'not_found' }), 1)
  t.equal(after.value('studio_gateway_errors_total', { code: 'internal' }), 0)
})

t.test("requests Node's HTTP parser rejects are counted as invalid_request", async (t) => {
  const gw = await startGateway(t)
  const answer = await rawRequest(
    await listenLocally(gw),
    'GET /v1/studios HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n',
  )
  t.match(answer, /^HTTP\/1\.1 400 /)
  const metrics = await scrape(t, gw)
  t.equal(metrics.value('studio_gateway_errors_total', { code: 'invalid_request' }), 1)
})

t.test('key cache hits and misses', async (t) => {
  const gw = await startGateway(t)
  const { secret } = await gw.key()
  for (let i = 0; i < 3; i++) await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })
  const metrics = await scrape(t, gw)
  t.equal(metrics.value('studio_gateway_key_cache_misses_total'), 1, 'the first use looks the key up')
  t.equal(metrics.value('studio_gateway_key_cache_hits_total'), 2, 'the next ones come from the cache')
})

t.test('rate-limit rejections are counted by limiter: per key, and failed authentication per IP', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_MAX: '1', RATE_LIMIT_UNAUTH_MAX: '1' } })
  const before = await scrape(t, gw)
  t.equal(before.value('studio_gateway_rate_limit_rejections_total', { limiter: 'key' }), 0)
  t.equal(before.value('studio_gateway_rate_limit_rejections_total', { limiter: 'ip' }), 0)
  t.equal(before.value('studio_gateway_rate_limit_fail_open_total'), 0)
  t.equal(before.value('studio_gateway_rate_limit_redis_outages_total'), 0)
  const { secret } = await gw.key()
  const statuses = []
  for (let i = 0; i < 3; i++)
    statuses.push((await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })).statusCode)
  for (let i = 0; i < 2; i++)
    statuses.push((await gw.app.inject({ url: '/v1/key', headers: bearer('sk_live_x') })).statusCode)
  t.same(statuses, [200, 429, 429, 401, 429])
  const after = await scrape(t, gw)
  t.equal(after.value('studio_gateway_rate_limit_rejections_total', { limiter: 'key' }), 2)
  t.equal(after.value('studio_gateway_rate_limit_rejections_total', { limiter: 'ip' }), 1)
  t.equal(after.value('studio_gateway_errors_total', { code: 'rate_limited' }), 3)
  t.equal(after.value('studio_gateway_rate_limit_fail_open_total'), 0, 'no Redis, nothing to fail open from')
})

t.test('process metrics come with the gateway metrics', async (t) => {
  const gw = await startGateway(t)
  const metrics = await scrape(t, gw)
  t.ok((metrics.value('process_cpu_user_seconds_total') ?? -1) >= 0)
  t.ok((metrics.value('nodejs_heap_size_used_bytes') ?? 0) > 0)
  t.equal(metrics.types.get('studio_gateway_shed_requests_total'), 'counter')
})

t.test('METRICS_TOKEN: /metrics needs it as a Bearer token; nothing else changes', async (t) => {
  const token = 'metrics-token-0123456789abcdef'
  const gw = await startGateway(t, { env: { METRICS_TOKEN: token } })
  for (const headers of [{}, { authorization: 'Bearer not-the-token-at-all' }, { authorization: token }]) {
    const res = await gw.app.inject({ url: '/metrics', headers })
    t.equal(res.statusCode, 401, JSON.stringify(headers))
    t.equal(errorOf(t, res).code, 'invalid_key')
    t.match(res.headers['www-authenticate'], /^Bearer /)
    t.notMatch(res.body, token)
  }
  await scrape(t, gw, { authorization: `Bearer ${token}` })
  t.equal((await gw.app.inject({ url: '/healthz' })).statusCode, 200, 'the probes need no token')
  t.notMatch(gw.logText(), token, 'the token is never logged')
})

t.test('without METRICS_TOKEN, /metrics is open', async (t) => {
  const gw = await startGateway(t)
  await scrape(t, gw)
})
