import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { startReferenceUpstream } from '../examples/reference-upstream.js'
import { isWellFormedKey, redactKeys } from '../lib/api-keys.js'
import { DEMO_ACCOUNT, DEMO_SANDBOX_STUDIOS, seedDemo } from '../lib/demo-seed.js'
import { bearer, errorOf, rememberSecret, startGateway } from './helpers/gateway.js'
import { parseExposition } from './helpers/prometheus.js'

/** Every /v1 route that names a studio, with its method. */
const studioRoutes = (studioId: string): InjectOptions[] => [
  { method: 'GET', url: `/v1/studios/${studioId}` },
  { method: 'GET', url: `/v1/studios/${studioId}/stream` },
  { method: 'GET', url: `/v1/studios/${studioId}/sessions` },
  { method: 'POST', url: `/v1/studios/${studioId}/stream/go-live` },
  { method: 'POST', url: `/v1/studios/${studioId}/stream/go-offline` },
]

/** An answer with its request id taken out: what must be identical byte for byte. */
function withoutRequestId(res: LightMyRequestResponse) {
  const { 'x-request-id': id, date: _date, ...headers } = res.headers
  // The rate-limit headers count this key's requests: they differ from one request to the next.
  for (const name of Object.keys(headers)) if (name.startsWith('ratelimit')) delete headers[name]
  return { status: res.statusCode, headers, body: res.body.replace(String(id), '<id>') }
}

t.test('test keys: sk_test_, the same body and checksum as live keys, redacted like them', async (t) => {
  const gw = await startGateway(t)
  const test = await gw.key({ mode: 'test' })
  t.match(test.secret, /^sk_test_[0-9A-Za-z]{38}$/)
  t.ok(isWellFormedKey(test.secret))
  const typo = `${test.secret.slice(0, -1)}${test.secret.endsWith('a') ? 'b' : 'a'}`
  t.notOk(isWellFormedKey(typo), 'a typo breaks the checksum')
  const refused = await gw.app.inject({ url: '/v1/key', headers: bearer(typo) })
  t.equal(refused.statusCode, 401)
  t.equal(errorOf(t, refused).code, 'invalid_key')
  const described = await gw.app.inject({ url: '/v1/key', headers: bearer(test.secret) })
  t.equal(described.statusCode, 200)
  t.match(described.json(), { id: test.id, prefix: test.secret.slice(0, 12) })
  t.equal(
    redactKeys(`key ${test.secret} and sk%5Ftest%5F${test.secret.slice(8)}`).includes(test.secret.slice(8)),
    false,
  )
  // A test key in a path reaches the access log scrubbed (the helper fails the test otherwise).
  await gw.app.inject({ url: `/v1/studios/${test.secret}`, headers: bearer(test.secret) })
  const echoed = await gw.app.inject({
    url: '/v1/key',
    headers: { ...bearer(test.secret), 'x-request-id': test.secret },
  })
  t.not(echoed.headers['x-request-id'], test.secret, 'a request id holding a test key is not echoed')
})

t.test('a test key sees only its account’s sandbox, a live key only live data', async (t) => {
  const gw = await startGateway(t)
  const live = await gw.key({ accountId: 'acct_modes' })
  const test = await gw.key({ accountId: 'acct_modes', mode: 'test' })
  const liveStudio = await gw.studio('acct_modes', 'Live studio')
  const sandboxStudio = await gw.studio('acct_modes', 'Sandbox studio', 'test')
  const request = (options: InjectOptions, secret: string) =>
    gw.app.inject({ ...options, headers: { ...bearer(secret), ...options.headers } })
  const ids = async (secret: string) =>
    ((await request({ url: '/v1/studios' }, secret)).json() as { data: { id: string }[] }).data.map((s) => s.id)

  t.same(await ids(live.secret), [liveStudio], 'the live list holds live studios only')
  t.same(await ids(test.secret), [sandboxStudio], 'the sandbox list holds sandbox studios only')

  t.test('the other mode’s studio answers exactly as a missing one, on every route and method', async (t) => {
    for (const [secret, own, other] of [
      [live.secret, liveStudio, sandboxStudio],
      [test.secret, sandboxStudio, liveStudio],
    ] as const) {
      // Found once through its own mode first, so a cache keyed without the mode would leak it.
      t.equal(
        (await request({ url: `/v1/studios/${other}` }, secret === live.secret ? test.secret : live.secret)).statusCode,
        200,
      )
      t.equal((await request({ url: `/v1/studios/${own}` }, secret)).statusCode, 200)
      const missing = `std_${'x'.repeat(other.length - 4)}`
      for (const [index, route] of studioRoutes(other).entries()) {
        const res = await request(route, secret)
        const absent = await request(studioRoutes(missing)[index] as InjectOptions, secret)
        t.equal(
          res.statusCode,
          secret === live.secret && route.method === 'POST' ? 503 : 404,
          `${route.method} ${route.url}`,
        )
        t.same(withoutRequestId(res), withoutRequestId(absent), `${route.method} ${route.url}: as a missing studio`)
      }
    }
  })

  t.test('the sandbox writes while live writes are gated (WRITES_ENABLED off)', async (t) => {
    t.equal(gw.config.writesEnabled, false)
    const liveWrite = await request({ method: 'POST', url: `/v1/studios/${liveStudio}/stream/go-live` }, live.secret)
    t.equal(liveWrite.statusCode, 503)
    t.equal(errorOf(t, liveWrite).code, 'write_disabled')
    const goLive = await request(
      { method: 'POST', url: `/v1/studios/${sandboxStudio}/stream/go-live`, payload: { title: 'CI run' } },
      test.secret,
    )
    t.equal(goLive.statusCode, 200)
    t.match(goLive.json(), { studioId: sandboxStudio, status: 'live', title: 'CI run' })
    const offline = await request(
      { method: 'POST', url: `/v1/studios/${sandboxStudio}/stream/go-offline` },
      test.secret,
    )
    t.match(offline.json(), { status: 'offline' })
    const sessions = (await request({ url: `/v1/studios/${sandboxStudio}/sessions` }, test.secret)).json()
    t.match(sessions, { data: [{ studioId: sandboxStudio, title: 'CI run' }], nextCursor: null })
    const stream = (await request({ url: `/v1/studios/${liveStudio}/stream` }, live.secret)).json()
    t.equal(stream.status, 'offline', 'live data untouched')
  })

  t.test('cursors never cross modes', async (t) => {
    await gw.studio('acct_modes', 'Second live', 'live')
    await gw.studio('acct_modes', 'Second sandbox', 'test')
    for (const [from, to] of [
      [live.secret, test.secret],
      [test.secret, live.secret],
    ]) {
      const { nextCursor } = (await request({ url: '/v1/studios?limit=1' }, from as string)).json()
      t.type(nextCursor, 'string')
      const crossed = await request({ url: `/v1/studios?cursor=${encodeURIComponent(nextCursor)}` }, to as string)
      t.equal(crossed.statusCode, 400)
      t.equal(errorOf(t, crossed).code, 'invalid_request')
      const own = await request({ url: `/v1/studios?limit=1&cursor=${encodeURIComponent(nextCursor)}` }, from as string)
      t.equal(own.statusCode, 200)
    }
  })
})

t.test('test traffic has its own rate-limit budget and shows as test in metrics and the access log', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_MAX: '2' } })
  const live = await gw.key({ accountId: 'acct_budget' })
  const test = await gw.key({ accountId: 'acct_budget', mode: 'test' })
  for (let i = 0; i < 2; i++) await gw.app.inject({ url: '/v1/key', headers: bearer(live.secret) })
  const spent = await gw.app.inject({ url: '/v1/key', headers: bearer(live.secret) })
  t.equal(spent.statusCode, 429, 'the live key’s budget is spent')
  const sandbox = await gw.app.inject({ url: '/v1/key', headers: bearer(test.secret) })
  t.equal(sandbox.statusCode, 200, 'the test key of the same account still has its own')
  t.equal(sandbox.headers['ratelimit-remaining'], '1')

  const metrics = parseExposition((await gw.app.inject({ url: '/metrics' })).body)
  t.equal(metrics.value('studio_gateway_http_requests_total', { route: '/v1/key', status: '200', mode: 'test' }), 1)
  t.equal(metrics.value('studio_gateway_http_requests_total', { route: '/v1/key', status: '200', mode: 'live' }), 2)
  t.equal(metrics.value('studio_gateway_http_requests_total', { route: '/v1/key', status: '429', mode: 'live' }), 1)
  const lines = gw.logs.filter((line) => line.msg === 'request completed' && line.route === '/v1/key')
  t.same(
    lines.map((line) => line.mode),
    ['live', 'live', 'live', 'test'],
  )
})

t.test('with UPSTREAM_URL the sandbox is served from the gateway’s own store', async (t) => {
  const upstream = await startReferenceUpstream()
  t.teardown(() => upstream.close())
  const gw = await startGateway(t, { env: { UPSTREAM_URL: upstream.url } })
  const live = await gw.key({ accountId: 'acct_up' })
  const test = await gw.key({ accountId: 'acct_up', mode: 'test' })
  const upstreamStudio = upstream.addStudio('acct_up', 'Upstream studio')
  const sandboxStudio = await gw.studio('acct_up', 'Sandbox studio', 'test')
  const before = upstream.received.length

  const sandboxList = (await gw.app.inject({ url: '/v1/studios', headers: bearer(test.secret) })).json()
  t.same(
    sandboxList.data.map((s: { id: string }) => s.id),
    [sandboxStudio],
  )
  const goLive = await gw.app.inject({
    method: 'POST',
    url: `/v1/studios/${sandboxStudio}/stream/go-live`,
    headers: bearer(test.secret),
  })
  t.equal(goLive.statusCode, 200, 'sandbox writes stay in the store')
  const hidden = await gw.app.inject({ url: `/v1/studios/${upstreamStudio.id}`, headers: bearer(test.secret) })
  t.equal(hidden.statusCode, 404, 'the upstream’s studios are live data')
  t.equal(upstream.received.length, before, 'a test key never reaches the upstream')

  const liveList = (await gw.app.inject({ url: '/v1/studios', headers: bearer(live.secret) })).json()
  t.same(
    liveList.data.map((s: { id: string }) => s.id),
    [upstreamStudio.id],
  )
  t.equal((await gw.app.inject({ url: `/v1/studios/${sandboxStudio}`, headers: bearer(live.secret) })).statusCode, 404)
})

t.test('the demo seed gives the demo account sandbox studios and a test key', async (t) => {
  const gw = await startGateway(t)
  const secrets = await seedDemo(gw.store)
  if (!secrets) throw new Error('an empty store is seeded')
  rememberSecret(secrets.live)
  rememberSecret(secrets.test)
  t.match(secrets.test, /^sk_test_/)
  const listed = (await gw.app.inject({ url: '/v1/studios', headers: bearer(secrets.test) })).json()
  t.same(listed.data.map((s: { id: string }) => s.id).sort(), DEMO_SANDBOX_STUDIOS.map((s) => s.id).sort())
  const key = (await gw.app.inject({ url: '/v1/key', headers: bearer(secrets.test) })).json()
  t.equal(key.accountId, DEMO_ACCOUNT)
})

t.test('the key API mints keys with a mode: its own by default, a test key never a live one', async (t) => {
  const gw = await startGateway(t)
  const live = await gw.key({ accountId: 'acct_keys_mode' })
  const test = await gw.key({ accountId: 'acct_keys_mode', mode: 'test' })
  const mint = async (secret: string, body: object) => {
    const res = await gw.app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(secret), payload: body })
    if (res.statusCode === 201) rememberSecret(res.json().secret)
    return res
  }
  const ownMode = await mint(test.secret, { name: 'ci', scopes: ['studio:read'] })
  t.equal(ownMode.statusCode, 201)
  t.match(ownMode.json(), { mode: 'test', secret: /^sk_test_[0-9A-Za-z]{38}$/, prefix: /^sk_test_/ })

  const liveFromTest = await mint(test.secret, { name: 'escalation', scopes: ['studio:read'], mode: 'live' })
  t.equal(liveFromTest.statusCode, 400)
  t.match(errorOf(t, liveFromTest), { code: 'invalid_request', message: /test key mints test keys only/ })

  const liveDefault = await mint(live.secret, { name: 'worker', scopes: ['studio:read'] })
  t.match(liveDefault.json(), { mode: 'live', secret: /^sk_live_/ })

  const testFromLive = await mint(live.secret, { name: 'ci from live', scopes: ['studio:read'], mode: 'test' })
  t.equal(testFromLive.statusCode, 201)
  t.match(testFromLive.json(), { mode: 'test', secret: /^sk_test_/ })
  const sandbox = await gw.app.inject({ url: '/v1/studios', headers: bearer(testFromLive.json().secret) })
  t.same(
    sandbox
      .json()
      .data.map((studio: { name: string }) => studio.name)
      .sort(),
    ['Sandbox Booth', 'Sandbox Stage'],
    'the account’s sandbox got its starting studios',
  )
  const liveStudios = await gw.app.inject({ url: '/v1/studios', headers: bearer(live.secret) })
  t.same(liveStudios.json().data, [], 'live data untouched')

  const bad = await mint(live.secret, { name: 'x', scopes: ['studio:read'], mode: 'sandbox' })
  t.equal(bad.statusCode, 400)
})
