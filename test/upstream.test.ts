import type { InjectOptions } from 'fastify'
import type { Test } from 'tap'
import t from 'tap'
import { type ReferenceUpstream, startReferenceUpstream, type UpstreamFault } from '../examples/reference-upstream.js'
import { bearer, errorOf, startGateway, type TestGateway } from './helpers/gateway.js'

/** The reference upstream on a loopback port, closed at the end of `t`. */
async function upstreamFor(t: Test): Promise<ReferenceUpstream> {
  const upstream = await startReferenceUpstream()
  t.teardown(() => upstream.close())
  return upstream
}

const UPSTREAM_TIMEOUT_MS = 500

async function gatewayOn(t: Test, upstream: ReferenceUpstream, env: Record<string, string> = {}) {
  return startGateway(t, {
    env: { UPSTREAM_URL: upstream.url, UPSTREAM_TIMEOUT: `${UPSTREAM_TIMEOUT_MS}ms`, WRITES_ENABLED: 'true', ...env },
  })
}

t.test('studios, stream and sessions come from the upstream studio service', async (t) => {
  const upstream = await upstreamFor(t)
  const gw = await gatewayOn(t, upstream)
  const { secret } = await gw.key({ accountId: 'acct_up' })
  const studios = ['One', 'Two', 'Three'].map((name) => upstream.addStudio('acct_up', name))
  const foreign = upstream.addStudio('acct_other', 'Not yours')
  const get = (url: string, headers: Record<string, string> = {}) =>
    gw.app.inject({ url, headers: { ...bearer(secret), ...headers } })
  const post = (url: string, payload?: object) =>
    gw.app.inject({ method: 'POST', url, headers: bearer(secret), ...(payload ? { payload } : {}) })

  t.test('the list pages through the upstream, our signed cursor wrapping its token', async (t) => {
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`
      const res = await get(`/v1/studios?limit=2${query}`)
      t.equal(res.statusCode, 200)
      const body = res.json() as { data: Array<{ id: string }>; nextCursor: string | null }
      seen.push(...body.data.map((studio) => studio.id))
      cursor = body.nextCursor
    } while (cursor !== null && seen.length < 10)
    const oldestFirst = [...studios].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || (a.id < b.id ? -1 : 1))
    t.same(
      seen,
      oldestFirst.map((studio) => studio.id),
    )
    const { nextCursor } = (await get('/v1/studios?limit=1')).json() as { nextCursor: string }
    const tag = nextCursor.split('.')[1] as string
    const forged = Buffer.from('u:b3RoZXI').toString('base64url')
    const tampered = await get(`/v1/studios?cursor=${encodeURIComponent(`${forged}.${tag}`)}`)
    t.equal(tampered.statusCode, 400, 'an altered cursor is refused before the upstream is asked')
    t.equal(errorOf(t, tampered).code, 'invalid_request')
  })

  t.test('one studio, its stream; another account’s studio reads exactly as a missing one', async (t) => {
    const [first] = studios as [(typeof studios)[0]]
    const res = await get(`/v1/studios/${first.id}`)
    t.equal(res.statusCode, 200)
    t.same(res.json(), first)
    t.match((await get(`/v1/studios/${first.id}/stream`)).json(), { studioId: first.id, status: 'offline' })
    for (const path of ['', '/stream', '/sessions']) {
      const answer = async (id: string) => {
        const reply = await get(`/v1/studios/${id}${path}`, { 'x-request-id': 'same' })
        return { status: reply.statusCode, body: reply.body }
      }
      const theirs = await answer(foreign.id)
      t.equal(theirs.status, 404, `${path || '/'}: 404`)
      t.same(theirs, await answer('std_missing000000000'), `${path || '/'}: identical to a missing studio`)
    }
    const odd = await get(`/v1/studios/${encodeURIComponent('../studios')}`)
    t.equal(odd.statusCode, 404, 'an id outside the contract is a 404 without a call')
    t.notOk(
      upstream.received.some((call) => call.url.includes('..')),
      'the upstream never saw it',
    )
  })

  t.test('go-live and go-offline go through the upstream; sessions follow', async (t) => {
    const studioId = (studios[1] as { id: string }).id
    const live = await post(`/v1/studios/${studioId}/stream/go-live`, { title: 'On air' })
    t.equal(live.statusCode, 200)
    t.match(live.json(), { studioId, status: 'live', title: 'On air', startedAt: String })
    t.same((await post(`/v1/studios/${studioId}/stream/go-live`, { title: 'Other' })).json(), live.json(), 'idempotent')
    t.match((await post(`/v1/studios/${studioId}/stream/go-offline`)).json(), { status: 'offline', title: null })
    await post(`/v1/studios/${studioId}/stream/go-live`)
    await post(`/v1/studios/${studioId}/stream/go-offline`)
    const page = (await get(`/v1/studios/${studioId}/sessions?limit=1`)).json()
    t.match(page.data, [{ studioId, title: null, startedAt: String, endedAt: String }], 'newest first')
    const rest = (await get(`/v1/studios/${studioId}/sessions?cursor=${encodeURIComponent(page.nextCursor)}`)).json()
    t.match(rest, { data: [{ title: 'On air' }], nextCursor: null })
  })

  t.test('the upstream is told the account and the request id, never the key', async (t) => {
    upstream.received.length = 0
    const res = await get(`/v1/studios/${(studios[0] as { id: string }).id}`, { 'x-request-id': 'trace-upstream-1' })
    t.equal(res.statusCode, 200)
    const [call] = upstream.received
    t.equal(call?.headers['x-account-id'], 'acct_up')
    t.equal(call?.headers['x-request-id'], 'trace-upstream-1')
    t.notOk(call?.headers.authorization)
    t.notOk(call?.headers['x-api-key'])
    t.notMatch(JSON.stringify(call?.headers), secret.slice(0, 12), 'no part of the key')
  })
})

t.test('a cursor of the SQL store is refused by the same gateway in upstream mode', async (t) => {
  const upstream = await upstreamFor(t)
  const plain = await startGateway(t)
  const { secret } = await plain.key({ accountId: 'acct_up' })
  await plain.studio('acct_up')
  await plain.studio('acct_up')
  const { nextCursor } = (await plain.app.inject({ url: '/v1/studios?limit=1', headers: bearer(secret) })).json()
  const viaUpstream = await startGateway(t, { storeEnv: plain.storeEnv, env: { UPSTREAM_URL: upstream.url } })
  const res = await viaUpstream.app.inject({
    url: `/v1/studios?cursor=${encodeURIComponent(nextCursor)}`,
    headers: bearer(secret),
  })
  t.equal(res.statusCode, 400, 'same secret, same list, but not a position of this service')
  t.equal(errorOf(t, res).code, 'invalid_request')
})

/** The answer to a call while the upstream misbehaves: an envelope of the expected code, in bounded time. */
async function expectFault(t: Test, gw: TestGateway, request: InjectOptions, code: string) {
  const started = performance.now()
  const res = await gw.app.inject(request)
  const elapsed = performance.now() - started
  const error = errorOf(t, res)
  t.equal(error.code, code, `${code}`)
  t.equal(res.statusCode, code === 'bad_gateway' ? 502 : 503)
  t.notMatch(error.message, /127\.0\.0\.1|ECONN|UND_ERR|simulated|oops/, 'no internal detail')
  if (code === 'unavailable') t.equal(res.headers['retry-after'], '1')
  // The design bound is the upstream timeout; the margin keeps a busy machine from flaking.
  t.ok(elapsed < UPSTREAM_TIMEOUT_MS + 1500, `answered in ${Math.round(elapsed)} ms, not hung`)
  return error
}

t.test('upstream faults map to 502 bad_gateway or 503 unavailable on every studio route', async (t) => {
  const upstream = await upstreamFor(t)
  const gw = await gatewayOn(t, upstream)
  const { secret } = await gw.key({ accountId: 'acct_up' })
  const { id } = upstream.addStudio('acct_up', 'Studio')
  const routes = [
    { method: 'GET', url: '/v1/studios' },
    { method: 'GET', url: `/v1/studios/${id}` },
    { method: 'GET', url: `/v1/studios/${id}/stream` },
    { method: 'GET', url: `/v1/studios/${id}/sessions` },
    { method: 'POST', url: `/v1/studios/${id}/stream/go-live` },
    { method: 'POST', url: `/v1/studios/${id}/stream/go-offline` },
  ] as const
  const faults: Array<[string, UpstreamFault, string]> = [
    ['a 500', { kind: 'error' }, 'bad_gateway'],
    ['a body that is not JSON', { kind: 'garbage' }, 'bad_gateway'],
    ['a body that breaks the schema', { kind: 'body', body: { surprise: true } }, 'bad_gateway'],
    ['an unexpected status (401)', { kind: 'status', status: 401 }, 'bad_gateway'],
    ['a redirect', { kind: 'status', status: 302 }, 'bad_gateway'],
    ['204 without a body', { kind: 'status', status: 204 }, 'bad_gateway'],
    ['an answer that is not HTTP', { kind: 'not-http' }, 'bad_gateway'],
    ['a connection reset', { kind: 'reset' }, 'unavailable'],
    ['an answer slower than UPSTREAM_TIMEOUT', { kind: 'slow', delayMs: UPSTREAM_TIMEOUT_MS + 1000 }, 'unavailable'],
  ]
  for (const [name, fault, code] of faults) {
    t.test(`${name} → ${code}`, async (t) => {
      upstream.setFault(fault)
      t.teardown(() => upstream.setFault(null))
      for (const route of routes) {
        t.comment(`${route.method} ${route.url}`)
        await expectFault(t, gw, { ...route, headers: bearer(secret) }, code)
      }
    })
  }

  t.test('the upstream down (connection refused) → 503 unavailable; back up → served, no restart', async (t) => {
    await upstream.stop()
    for (const route of routes) await expectFault(t, gw, { ...route, headers: bearer(secret) }, 'unavailable')
    const notReady = await gw.app.inject({ url: '/readyz' })
    t.equal(errorOf(t, notReady).message, 'not ready: upstream is down', '/readyz names the upstream')
    t.match(notReady.json().dependencies, { upstream: { status: 'down' } })
    await upstream.start()
    const res = await gw.app.inject({ url: `/v1/studios/${id}`, headers: bearer(secret) })
    t.equal(res.statusCode, 200)
    t.match((await gw.app.inject({ url: '/readyz' })).json(), {
      status: 'ready',
      dependencies: { upstream: { status: 'up' } },
    })
  })

  t.test('failures are logged with their cause and the request id', async (t) => {
    upstream.setFault({ kind: 'error' }, 2)
    await gw.app.inject({ url: `/v1/studios/${id}`, headers: { ...bearer(secret), 'x-request-id': 'trace-502' } })
    const line = gw.logs.find((entry) => entry.requestId === 'trace-502' && entry.level === 40)
    t.match(line, { code: 'bad_gateway', err: { message: /answered 500/ } })
  })
})

t.test('answers that are well-formed but wrong are 502 bad_gateway', async (t) => {
  const upstream = await upstreamFor(t)
  const gw = await gatewayOn(t, upstream)
  const { secret } = await gw.key({ accountId: 'acct_up' })
  const { id, createdAt } = upstream.addStudio('acct_up', 'Studio')
  const stream = { studioId: id, status: 'offline', title: null, startedAt: null, updatedAt: createdAt }
  const cases: Array<[string, string, string, unknown]> = [
    ['another studio than asked', 'GET', `/v1/studios/${id}`, { id: 'std_other', name: 'x', createdAt }],
    ['a time that is not RFC 3339', 'GET', `/v1/studios/${id}`, { id, name: 'x', createdAt: 'yesterday' }],
    ['the stream of another studio', 'GET', `/v1/studios/${id}/stream`, { ...stream, studioId: 'std_other' }],
    ['an unknown stream status', 'GET', `/v1/studios/${id}/stream`, { ...stream, status: 'paused' }],
    ['offline after a go-live', 'POST', `/v1/studios/${id}/stream/go-live`, stream],
    [
      'a page larger than the limit',
      'GET',
      '/v1/studios?limit=1',
      {
        data: [
          { id, name: 'a', createdAt },
          { id: 'std_b', name: 'b', createdAt },
        ],
        next: null,
      },
    ],
    ['a next token that is not a string', 'GET', '/v1/studios', { data: [], next: 5 }],
    [
      'a session of another studio',
      'GET',
      `/v1/studios/${id}/sessions`,
      {
        data: [{ id: 'ses_x', studioId: 'std_other', title: null, startedAt: createdAt, endedAt: createdAt }],
        next: null,
      },
    ],
  ]
  for (const [name, method, url, body] of cases) {
    upstream.setFault({ kind: 'body', body })
    t.comment(name)
    await expectFault(t, gw, { method: method as 'GET', url, headers: bearer(secret) }, 'bad_gateway')
  }
  upstream.setFault({ kind: 'status', status: 404 })
  await expectFault(t, gw, { url: '/v1/studios', headers: bearer(secret) }, 'bad_gateway')
  // Well-formed, and would be accepted (extra fields are), but over the 1 MiB bound.
  upstream.setFault({ kind: 'body', body: { id, name: 'x', createdAt, padding: 'x'.repeat(1_100_000) } })
  await expectFault(t, gw, { url: `/v1/studios/${id}`, headers: bearer(secret) }, 'bad_gateway')
  upstream.setFault(null)

  upstream.setFault({ kind: 'body', body: { id, name: 'Renamed', createdAt: '2026-01-02T03:04:05+02:00', extra: 1 } })
  const tolerated = await gw.app.inject({ url: `/v1/studios/${id}`, headers: bearer(secret) })
  upstream.setFault(null)
  t.equal(tolerated.statusCode, 200, 'extra fields are tolerated')
  t.same(tolerated.json(), { id, name: 'Renamed', createdAt: '2026-01-02T01:04:05.000Z' }, 'dropped; times in UTC')
})

t.test('reads are retried once on a transient failure; writes never are', async (t) => {
  const upstream = await upstreamFor(t)
  const gw = await gatewayOn(t, upstream)
  const { secret } = await gw.key({ accountId: 'acct_up' })
  const { id } = upstream.addStudio('acct_up', 'Studio')
  const callsTo = (path: string) => upstream.received.filter((call) => call.url.endsWith(path)).length

  for (const fault of [{ kind: 'status', status: 503 }, { kind: 'reset' }] as const) {
    upstream.received.length = 0
    upstream.setFault(fault, 1)
    const res = await gw.app.inject({ url: `/v1/studios/${id}/stream`, headers: bearer(secret) })
    t.equal(res.statusCode, 200, `a read survives one ${fault.kind}`)
    t.equal(callsTo('/stream'), 2, 'asked twice')
  }

  upstream.received.length = 0
  upstream.setFault({ kind: 'status', status: 503 }, 2)
  const twice = await gw.app.inject({ url: `/v1/studios/${id}/stream`, headers: bearer(secret) })
  t.equal(errorOf(t, twice).code, 'bad_gateway', 'bounded: two failures are a 502')
  t.equal(callsTo('/stream'), 2)

  upstream.received.length = 0
  upstream.setFault({ kind: 'status', status: 503 }, 1)
  const write = await gw.app.inject({
    method: 'POST',
    url: `/v1/studios/${id}/stream/go-live`,
    headers: bearer(secret),
  })
  t.equal(errorOf(t, write).code, 'bad_gateway')
  t.equal(callsTo('/go-live'), 1, 'a write is sent once')
  upstream.setFault(null)
})

t.test('keys still come from the store: a revoked key is refused before the upstream is asked', async (t) => {
  const upstream = await upstreamFor(t)
  const gw = await gatewayOn(t, upstream, { KEY_CACHE_TTL: '0' })
  const { secret, id } = await gw.key({ accountId: 'acct_up' })
  await gw.store.keys.revoke(id, new Date().toISOString())
  upstream.received.length = 0
  const res = await gw.app.inject({ url: '/v1/studios', headers: bearer(secret) })
  t.equal(errorOf(t, res).code, 'invalid_key')
  t.equal(upstream.received.length, 0)
})
