import t from 'tap'
import { bearer, startGateway } from './helpers/gateway.js'

t.test('one access-log line per request, with the fields an operator needs', async (t) => {
  const gw = await startGateway(t)
  const { secret, id } = await gw.key()
  await gw.app.inject({ url: '/v1/studios?limit=5', headers: { ...bearer(secret), 'x-request-id': 'log-1' } })
  await gw.app.inject({ url: '/v1/studios', headers: { 'x-request-id': 'log-2' } })
  await gw.app.inject({ url: '/v1/unknown', headers: { 'x-request-id': 'log-3' } })

  const [ok, unauthenticated, unknown] = ['log-1', 'log-2', 'log-3'].map((requestId) =>
    gw.logs.filter((line) => line.requestId === requestId),
  )
  t.equal(ok?.length, 1)
  t.match(ok?.[0], {
    level: 30,
    msg: 'request completed',
    requestId: 'log-1',
    method: 'GET',
    route: '/v1/studios',
    path: '/v1/studios?limit=5',
    status: 200,
    durationMs: Number,
    keyId: id,
  })
  t.match(unauthenticated?.[0], { status: 401, keyId: null, route: '/v1/studios' })
  t.match(unknown?.[0], { status: 404, route: null })
})

t.test('LOG_LEVEL=warn writes no access log', async (t) => {
  const gw = await startGateway(t, { env: { LOG_LEVEL: 'warn' } })
  const { secret } = await gw.key()
  await gw.app.inject({ url: '/v1/studios', headers: bearer(secret) })
  t.equal(gw.logText(), '')
})

t.test('secrets never reach the log, at any level', async (t) => {
  const gw = await startGateway(t, { env: { LOG_LEVEL: 'trace', WRITES_ENABLED: 'true' } })
  const { secret } = await gw.key()
  const revoked = await gw.key()
  await gw.store.keys.revoke(revoked.id, new Date().toISOString())
  const studioId = await gw.studio('acct_test')
  const requests = [
    { url: '/v1/studios', headers: bearer(secret) },
    { url: '/v1/studios', headers: { 'x-api-key': secret } },
    { url: '/v1/studios', headers: bearer(revoked.secret) },
    { url: '/v1/studios', headers: { ...bearer(secret), 'x-api-key': revoked.secret } },
    { url: `/v1/studios/${secret}`, headers: bearer(secret) },
    { url: `/v1/studios?cursor=${secret}`, headers: bearer(secret) },
    { url: `/v1/${secret}`, headers: {} },
    { url: '/v1/studios', headers: { 'x-request-id': secret } },
    {
      method: 'POST' as const,
      url: `/v1/studios/${studioId}/stream/go-live`,
      headers: bearer(secret),
      payload: { title: secret },
    },
  ]
  for (const request of requests) await gw.app.inject(request)
  const text = gw.logText()
  t.ok(text.length > 0, 'something was logged')
  for (const key of [secret, revoked.secret]) {
    t.notOk(text.includes(key), 'no secret in the log')
    t.notOk(text.includes(key.slice(8, 30)), 'not even most of one')
  }
})
