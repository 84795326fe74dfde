import { setTimeout as sleep } from 'node:timers/promises'
import { parseList } from 'structured-headers'
import type { Test } from 'tap'
import t from 'tap'
import { generateKeySecret } from '../lib/api-keys.js'
import { bearer, errorOf, startGateway, type TestGateway } from './helpers/gateway.js'

// In-memory counters (no REDIS_URL): the budgets, the headers, the 429 envelope and the order of
// checks. test/rate-limit-redis.test.ts covers shared counters and Redis outages.

type Response = Awaited<ReturnType<TestGateway['app']['inject']>>

const get = (gw: TestGateway, url: string, headers: Record<string, string> = {}, remoteAddress?: string) =>
  gw.app.inject({ url, headers, ...(remoteAddress ? { remoteAddress } : {}) })

/** The RateLimit-* headers as numbers, asserting all three are there. */
function limitHeaders(t: Test, res: Response) {
  for (const name of ['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset']) {
    t.match(res.headers[name], /^\d+$/, `${name} on a ${res.statusCode}`)
  }
  return {
    limit: Number(res.headers['ratelimit-limit']),
    remaining: Number(res.headers['ratelimit-remaining']),
    reset: Number(res.headers['ratelimit-reset']),
  }
}

/** Asserts a 429 rate_limited envelope and returns its Retry-After in seconds. */
function expectRateLimited(t: Test, res: Response): number {
  t.equal(res.statusCode, 429, 'answered 429')
  const error = errorOf(t, res)
  t.equal(error.code, 'rate_limited')
  t.match(res.headers['retry-after'], /^\d+$/, 'Retry-After in whole seconds')
  const retryAfter = Number(res.headers['retry-after'])
  t.ok(retryAfter >= 1, 'Retry-After is at least a second')
  t.match(error.message, new RegExp(`retry in ${retryAfter} seconds?`), 'the message says when to retry')
  t.equal(limitHeaders(t, res).remaining, 0)
  return retryAfter
}

t.test('a key gets RATE_LIMIT_MAX requests per window, then 429 until Retry-After', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW: '2s' } })
  const { secret } = await gw.key()

  for (let i = 1; i <= 3; i++) {
    const res = await get(gw, '/v1/key', bearer(secret))
    t.equal(res.statusCode, 200, `request ${i} is served`)
    const headers = limitHeaders(t, res)
    t.equal(headers.limit, 3)
    t.equal(headers.remaining, 3 - i)
    // The oldest request leaves the window after the window and at most one slot (1/20 of it) more.
    t.ok(headers.reset >= 1 && headers.reset <= 3, 'RateLimit-Reset is within the window and a slot')
  }

  const started = Date.now()
  const limited = await get(gw, '/v1/key', bearer(secret))
  const retryAfter = expectRateLimited(t, limited)
  t.ok(retryAfter <= 3, 'Retry-After is no longer than the window and a slot')
  t.equal(limited.headers['ratelimit-reset'], limited.headers['retry-after'])
  t.equal(
    limited.headers['x-key-scopes'],
    'studio:read, stream:read, stream:golive, keys:read, keys:write',
    'the key is known on a 429',
  )
  t.equal(gw.app.rateLimitStats.rejected.key, 1, 'the rejection is counted')

  // Waiting what Retry-After says is enough (a few ms of margin for timer granularity).
  await sleep(Math.max(0, retryAfter * 1000 - (Date.now() - started)) + 20)
  const after = await get(gw, '/v1/key', bearer(secret))
  t.equal(after.statusCode, 200, 'served again after Retry-After')
  t.ok(limitHeaders(t, after).remaining <= 2, 'the oldest requests have left the window')
})

t.test('two keys have separate budgets, even of one account and one IP', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW: '1m' } })
  const first = await gw.key()
  const second = await gw.key()
  for (let i = 0; i < 2; i++) t.equal((await get(gw, '/v1/key', bearer(first.secret))).statusCode, 200)
  expectRateLimited(t, await get(gw, '/v1/key', bearer(first.secret)))

  const res = await get(gw, '/v1/key', bearer(second.secret))
  t.equal(res.statusCode, 200, 'the other key is untouched')
  t.equal(limitHeaders(t, res).remaining, 1)
})

t.test("a key's own rate limit overrides the default", async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_MAX: '5', RATE_LIMIT_WINDOW: '1s' } })
  const strict = await gw.key({ rateLimits: [{ max: 2, windowMs: 60_000 }] })
  const generous = await gw.key({ rateLimits: [{ max: 8, windowMs: 60_000 }] })
  const plain = await gw.key()

  for (let i = 0; i < 2; i++) {
    const res = await get(gw, '/v1/key', bearer(strict.secret))
    t.equal(res.statusCode, 200)
    t.equal(limitHeaders(t, res).limit, 2, "the key's max")
  }
  const limited = await get(gw, '/v1/key', bearer(strict.secret))
  const retryAfter = expectRateLimited(t, limited)
  t.ok(retryAfter > 50 && retryAfter <= 63, `Retry-After follows the key's 1m window and a slot (${retryAfter})`)

  for (let i = 0; i < 8; i++) t.equal((await get(gw, '/v1/key', bearer(generous.secret))).statusCode, 200)
  expectRateLimited(t, await get(gw, '/v1/key', bearer(generous.secret)))

  const res = await get(gw, '/v1/key', bearer(plain.secret))
  t.equal(limitHeaders(t, res).limit, 5, 'a key without its own limit has the default')
})

t.test('the rate limit comes after the key and before the scope', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_MAX: '1', RATE_LIMIT_WINDOW: '1m' } })
  const { secret } = await gw.key({ scopes: ['studio:read'] })
  t.equal((await get(gw, '/v1/key', bearer(secret))).statusCode, 200)

  // Over its budget, the key learns about the budget before the missing scope.
  const res = await get(gw, '/v1/studios/std_x/stream', bearer(secret))
  expectRateLimited(t, res)
  t.equal(res.headers['x-accepted-scopes'], 'stream:read')

  // And a key within budget still meets the scope check, with the headers.
  const other = await gw.key({ scopes: ['studio:read'] })
  const forbidden = await get(gw, '/v1/studios/std_x/stream', bearer(other.secret))
  t.equal(forbidden.statusCode, 403)
  t.equal(limitHeaders(t, forbidden).remaining, 0, 'the refused request still spent the budget')
})

t.test('every /v1 answer carries the RateLimit headers, success or error', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_MAX: '100', RATE_LIMIT_UNAUTH_MAX: '50' } })
  const { secret, accountId } = await gw.key()
  const reader = await gw.key({ scopes: ['studio:read'] })
  const studio = await gw.studio(accountId)
  type Request = { method?: 'GET' | 'POST'; url: string; headers?: Record<string, string> }
  // [what, status, request, the budget that applies: the key's (100) or the client IP's (50)]
  const cases: Array<[string, number, Request, number]> = [
    ['a list', 200, { url: '/v1/studios', headers: bearer(secret) }, 100],
    ['a studio', 200, { url: `/v1/studios/${studio}`, headers: bearer(secret) }, 100],
    ['no key', 401, { url: '/v1/studios' }, 50],
    ['an unknown key', 401, { url: '/v1/studios', headers: bearer(generateKeySecret()) }, 50],
    ['a missing scope', 403, { url: `/v1/studios/${studio}/stream`, headers: bearer(reader.secret) }, 100],
    ['a bad parameter', 400, { url: '/v1/studios?limit=abc', headers: bearer(secret) }, 100],
    ['a missing studio', 404, { url: '/v1/studios/std_nope', headers: bearer(secret) }, 100],
    ['an unknown route', 404, { url: '/v1/nothing-here', headers: bearer(secret) }, 50],
    ['a wrong method', 404, { method: 'POST', url: '/v1/key', headers: bearer(secret) }, 50],
    ['a path that is not a URL', 400, { url: '/v1/studios/%zz', headers: bearer(secret) }, 50],
    [
      'writes disabled',
      503,
      { method: 'POST', url: `/v1/studios/${studio}/stream/go-live`, headers: bearer(secret) },
      100,
    ],
  ]
  for (const [name, status, request, budget] of cases) {
    const res = await gw.app.inject(request)
    t.equal(res.statusCode, status, `${name}: ${status}`)
    t.equal(limitHeaders(t, res).limit, budget, `${name}: the budget that applied`)
  }
})

t.test('failed authentication is limited per client IP, and only failures count', async (t) => {
  const gw = await startGateway(t, {
    env: { RATE_LIMIT_UNAUTH_MAX: '3', RATE_LIMIT_WINDOW: '1m', RATE_LIMIT_MAX: '100' },
  })
  const { secret } = await gw.key()
  const attacker = '203.0.113.7'
  const guesses = [{}, bearer('sk_live_not-even-a-key'), bearer(`sk_live_${'a'.repeat(38)}`)]
  for (const [i, headers] of guesses.entries()) {
    const res = await get(gw, '/v1/studios', headers, attacker)
    t.equal(res.statusCode, 401, `failure ${i + 1} is a 401`)
    const limit = limitHeaders(t, res)
    t.equal(limit.limit, 3, 'the per-IP budget for failures')
    t.equal(limit.remaining, 2 - i)
  }
  const limited = await get(gw, '/v1/studios', bearer(`sk_live_${'b'.repeat(38)}`), attacker)
  expectRateLimited(t, limited)
  t.notOk(limited.headers['x-key-scopes'], 'no key was accepted')
  t.equal(gw.app.rateLimitStats.rejected.ip, 1)

  const valid = await get(gw, '/v1/studios', bearer(secret), attacker)
  t.equal(valid.statusCode, 200, 'a valid key from that IP still gets through')
  t.equal(limitHeaders(t, valid).limit, 100, 'and is counted on its own budget')

  const conflicting = await get(gw, '/v1/studios', { ...bearer(secret), 'x-api-key': generateKeySecret() }, attacker)
  t.equal(conflicting.statusCode, 400, 'two different keys is malformed input, answered as such')
  t.equal(limitHeaders(t, conflicting).remaining, 0)

  const elsewhere = await get(gw, '/v1/studios', {}, '198.51.100.20')
  t.equal(elsewhere.statusCode, 401, 'another IP has its own budget')
  t.equal(limitHeaders(t, elsewhere).remaining, 2)
})

t.test('malformed requests without a key show the IP budget but do not spend it', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_UNAUTH_MAX: '2' } })
  const [a, b] = [generateKeySecret(), generateKeySecret()]
  for (let i = 0; i < 4; i++) {
    const conflicting = await get(gw, '/v1/key', { ...bearer(a), 'x-api-key': b })
    t.equal(conflicting.statusCode, 400)
    t.equal(limitHeaders(t, conflicting).remaining, 2)
    const badUrl = await get(gw, '/v1/studios/%zz/stream')
    t.equal(badUrl.statusCode, 400)
    t.equal(limitHeaders(t, badUrl).remaining, 2)
  }
  t.equal((await get(gw, '/v1/key')).statusCode, 401, 'the budget is intact for failed authentication')
})

t.test('unknown routes are limited per client IP, with or without a key', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_UNAUTH_MAX: '2', RATE_LIMIT_WINDOW: '1m' } })
  const { secret } = await gw.key()
  const prober = '192.0.2.44'
  t.equal((await get(gw, '/v1/admin', {}, prober)).statusCode, 404)
  t.equal((await get(gw, '/wp-login.php', bearer(secret), prober)).statusCode, 404)
  const limited = await get(gw, '/v1/.env', {}, prober)
  expectRateLimited(t, limited)

  const badUrl = await get(gw, '/v1/studios/%zz', {}, prober)
  t.equal(badUrl.statusCode, 400, 'a path that is not a URL is malformed input, not a guess: not limited')
  t.equal(limitHeaders(t, badUrl).remaining, 0, 'but it shows the spent budget')
  t.equal((await get(gw, '/v1/key', bearer(secret), prober)).statusCode, 200, 'real routes with a key still work')
  t.equal((await get(gw, '/v1/admin', {}, '192.0.2.45')).statusCode, 404, 'another IP is not limited')
})

t.test('IPv6 clients share a failure budget per /64; an IPv4-mapped address counts as its IPv4 address', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_UNAUTH_MAX: '2', RATE_LIMIT_WINDOW: '1m' } })
  t.equal((await get(gw, '/v1/key', {}, '2001:db8:0:1::a')).statusCode, 401)
  t.equal((await get(gw, '/v1/key', {}, '2001:DB8:0:1:ffff:ffff:ffff:ffff')).statusCode, 401, 'same /64')
  expectRateLimited(t, await get(gw, '/v1/key', {}, '2001:db8:0:1:1234::7'))
  t.equal((await get(gw, '/v1/key', {}, '2001:db8:0:2::a')).statusCode, 401, 'the next /64 has its own budget')

  t.equal((await get(gw, '/v1/key', {}, '198.51.100.7')).statusCode, 401)
  t.equal((await get(gw, '/v1/key', {}, '::ffff:198.51.100.7')).statusCode, 401, 'the same client, mapped')
  expectRateLimited(t, await get(gw, '/v1/key', {}, '198.51.100.7'))
  t.equal((await get(gw, '/v1/key', {}, '198.51.100.8')).statusCode, 401, 'IPv4 addresses are not grouped')
})

t.test('behind a proxy (TRUST_PROXY), the client IP comes from X-Forwarded-For', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_UNAUTH_MAX: '1', TRUST_PROXY: '127.0.0.1' } })
  const from = (ip: string) => ({ 'x-forwarded-for': ip })
  t.equal((await get(gw, '/v1/key', from('203.0.113.1'))).statusCode, 401)
  expectRateLimited(t, await get(gw, '/v1/key', from('203.0.113.1')))
  t.equal((await get(gw, '/v1/key', from('203.0.113.2'))).statusCode, 401, 'each forwarded client has a budget')

  // Trusting any proxy, the first entry is whatever the client wrote: text that is no address
  // shares one budget (neither a fresh budget per junk value, nor counters as long as the junk).
  const trusting = await startGateway(t, { env: { RATE_LIMIT_UNAUTH_MAX: '2', TRUST_PROXY: 'true' } })
  t.equal((await get(trusting, '/v1/key', from(`${'x'.repeat(4000)}1`))).statusCode, 401)
  t.equal((await get(trusting, '/v1/key', from('not-an-ip'))).statusCode, 401)
  expectRateLimited(t, await get(trusting, '/v1/key', from(`${'y'.repeat(4000)}2`)))
  t.equal((await get(trusting, '/v1/key', from('203.0.113.9'))).statusCode, 401, 'an address has its own')

  // Without TRUST_PROXY the header is ignored: every request counts against the proxy's address.
  const direct = await startGateway(t, { env: { RATE_LIMIT_UNAUTH_MAX: '1' } })
  t.equal((await get(direct, '/v1/key', from('203.0.113.1'))).statusCode, 401)
  expectRateLimited(t, await get(direct, '/v1/key', from('203.0.113.2')))
})

t.test('when key verification is down, the 503 shows the IP budget without spending it', async (t) => {
  const gw = await startGateway(t, {
    env: { RATE_LIMIT_UNAUTH_MAX: '2' },
    keys: (store) => ({
      ...store.keys,
      findByHash: async () => {
        throw new Error('database is gone')
      },
    }),
  })
  for (let i = 0; i < 4; i++) {
    const res = await get(gw, '/v1/key', bearer(generateKeySecret()))
    t.equal(res.statusCode, 503)
    t.equal(errorOf(t, res).code, 'unavailable')
    t.equal(limitHeaders(t, res).remaining, 2, 'not counted as a failed authentication')
  }
})

t.test('without REDIS_URL there is no Redis dependency and counters are in memory', async (t) => {
  const gw = await startGateway(t)
  t.notOk(gw.app.dependencies.names().includes('redis'))
  t.match(gw.app.rateLimitStats, { store: 'memory', redisReachable: null, failOpen: 0, outages: 0 })
})

/** Successes of a run, as [sent, received] times: checks that no L + 1 of them fit in any W. */
function assertAtMostLInAnyWindow(t: Test, successes: [number, number][], limit: number, windowMs: number) {
  for (let i = 0; i + limit < successes.length; i++) {
    const [sentFirst] = successes[i] as [number, number]
    const [, receivedLast] = successes[i + limit] as [number, number]
    // Each was decided between its sending and its answer: these L + 1 surely fell within W.
    if (receivedLast - sentFirst < windowMs) {
      t.fail(`${limit + 1} requests allowed within ${Math.round(receivedLast - sentFirst)} ms (window ${windowMs} ms)`)
      return
    }
  }
  t.pass(`never more than ${limit} allowed in any ${windowMs} ms (${successes.length} allowed)`)
}

t.test('no burst at a window boundary: at most RATE_LIMIT_MAX requests in any RATE_LIMIT_WINDOW', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_MAX: '4', RATE_LIMIT_WINDOW: '1s' } })
  const { secret } = await gw.key()
  const started = performance.now()
  t.equal((await get(gw, '/v1/key', bearer(secret))).statusCode, 200, 'one request opens what a fixed window would')
  const firstAnswered = performance.now()
  await sleep(900 - (performance.now() - started))
  for (let i = 0; i < 3; i++) t.equal((await get(gw, '/v1/key', bearer(secret))).statusCode, 200, 'the rest, late')
  // A fixed window would be fresh now (four more); a sliding one still holds the three late ones.
  // Measured from the first answer: the first request was counted before it, whatever its latency.
  await sleep(Math.max(0, 1060 - (performance.now() - firstAnswered)))
  t.equal((await get(gw, '/v1/key', bearer(secret))).statusCode, 200, 'the first request has left the window')
  const after = await get(gw, '/v1/key', bearer(secret))
  t.equal(after.statusCode, 429, 'past the old boundary, the late requests still count')
  const retryAfter = Number(after.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= 2, `Retry-After says when the late ones leave (${retryAfter})`)

  // Random traffic for a while: whatever the timing, never more than the limit in any window.
  const other = await gw.key()
  const successes: [number, number][] = []
  const until = performance.now() + 2500
  while (performance.now() < until) {
    const sent = performance.now()
    const res = await get(gw, '/v1/key', bearer(other.secret))
    if (res.statusCode === 200) successes.push([sent, performance.now()])
    await sleep(Math.random() * 40)
  }
  t.ok(successes.length >= 8, 'the run was long enough to cross several windows')
  assertAtMostLInAnyWindow(t, successes, 4, 1000)
})

t.test('a key with several policies is held by the strictest, and the answer names it', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_MAX: '100', RATE_LIMIT_WINDOW: '1m' } })
  const { secret } = await gw.key({
    rateLimits: [
      { max: 3, windowMs: 1000 },
      { max: 5, windowMs: 60_000 },
    ],
  })
  const statuses: number[] = []
  let res: Response | undefined
  for (let i = 0; i < 3; i++) {
    res = await get(gw, '/v1/key', bearer(secret))
    statuses.push(res.statusCode)
  }
  t.same(statuses, [200, 200, 200])
  t.equal(res?.headers['ratelimit-policy'], '"1s";q=3;w=1, "1m";q=5;w=60', 'every policy of the key')
  t.match(res?.headers.ratelimit, /^"1s";r=0;t=[12]$/, 'the per-second policy has the fewest left')

  const bySecond = await get(gw, '/v1/key', bearer(secret))
  expectRateLimited(t, bySecond)
  t.match(bySecond.headers.ratelimit, /^"1s";r=0;t=[12]$/, 'refused by the per-second policy')
  t.equal(bySecond.headers.ratelimit, `"1s";r=0;t=${bySecond.headers['retry-after']}`)

  await sleep(1150)
  t.equal((await get(gw, '/v1/key', bearer(secret))).statusCode, 200)
  const last = await get(gw, '/v1/key', bearer(secret))
  t.equal(last.statusCode, 200)
  t.match(last.headers.ratelimit, /^"1m";r=0;t=\d+$/, 'now the per-minute policy has the fewest left')
  const byMinute = await get(gw, '/v1/key', bearer(secret))
  const retryAfter = expectRateLimited(t, byMinute)
  t.ok(
    retryAfter > 50 && retryAfter <= 63,
    `refused by the per-minute policy for the rest of its window (${retryAfter})`,
  )
  t.equal(byMinute.headers.ratelimit, `"1m";r=0;t=${retryAfter}`)
})

t.test('RateLimit-Policy and RateLimit are RFC 9651 lists that agree with the other headers', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW: '30s' } })
  const { secret } = await gw.key()
  for (let i = 0; i < 3; i++) {
    const res = await get(gw, '/v1/key', bearer(secret))
    const policies = parseList(String(res.headers['ratelimit-policy']))
    t.equal(policies.length, 1)
    const [name, policyParams] = policies[0] as [unknown, Map<string, unknown>]
    t.equal(name, 'default', 'the default policy, a string')
    t.equal(policyParams.get('q'), 2)
    t.equal(policyParams.get('w'), 30)
    const limits = parseList(String(res.headers.ratelimit))
    t.equal(limits.length, 1)
    const [limitName, params] = limits[0] as [unknown, Map<string, unknown>]
    t.equal(limitName, 'default', 'names the policy that applied')
    t.equal(params.get('r'), Number(res.headers['ratelimit-remaining']), 'r is RateLimit-Remaining')
    if (res.statusCode === 429) {
      t.equal(params.get('t'), Number(res.headers['retry-after']), 't is the Retry-After of a 429')
      t.equal(params.get('t'), Number(res.headers['ratelimit-reset']))
    } else {
      t.equal(params.get('t'), Number(res.headers['ratelimit-reset']), 't is RateLimit-Reset')
    }
  }
  // A client IP's failure budget speaks the same fields.
  const refused = await get(gw, '/v1/key')
  t.same(
    parseList(String(refused.headers['ratelimit-policy'])).map(([name]) => name),
    ['failures'],
    'a refusal before the key shows the failure budget',
  )
})

t.test("a key's policies can be changed after creation and apply within KEY_CACHE_TTL", async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_MAX: '100', KEY_CACHE_TTL: '200ms' } })
  const { secret, id } = await gw.key()
  t.equal((await get(gw, '/v1/key', bearer(secret))).headers['ratelimit-limit'], '100')
  await gw.store.keys.update(id, { rateLimits: [{ max: 1, windowMs: 60_000 }] })
  await sleep(250)
  const res = await get(gw, '/v1/key', bearer(secret))
  t.equal(res.headers['ratelimit-policy'], '"1m";q=1;w=60', 'the new policy')
  expectRateLimited(t, await get(gw, '/v1/key', bearer(secret)))
  await gw.store.keys.update(id, { rateLimits: null })
  await sleep(250)
  t.equal((await get(gw, '/v1/key', bearer(secret))).headers['ratelimit-limit'], '100', 'back to the default')
})
