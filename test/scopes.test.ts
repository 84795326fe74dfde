import t from 'tap'
import { bearer, errorOf, startGateway } from './helpers/gateway.js'

t.test('scopes', async (t) => {
  const gw = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
  const studioId = await gw.studio('acct_test')
  const readOnly = await gw.key({ scopes: ['studio:read'] })
  const streamOnly = await gw.key({ scopes: ['stream:read'] })

  const routes = [
    { method: 'GET', url: '/v1/studios', scope: 'studio:read' },
    { method: 'GET', url: `/v1/studios/${studioId}`, scope: 'studio:read' },
    { method: 'GET', url: `/v1/studios/${studioId}/stream`, scope: 'stream:read' },
    { method: 'GET', url: `/v1/studios/${studioId}/sessions`, scope: 'stream:read' },
    { method: 'POST', url: `/v1/studios/${studioId}/stream/go-live`, scope: 'stream:golive' },
    { method: 'POST', url: `/v1/studios/${studioId}/stream/go-offline`, scope: 'stream:golive' },
  ] as const

  for (const route of routes) {
    t.test(`${route.method} ${route.url.replace(studioId, '{studioId}')} needs ${route.scope}`, async (t) => {
      const lacking = route.scope === 'studio:read' ? streamOnly : readOnly
      const res = await gw.app.inject({ method: route.method, url: route.url, headers: bearer(lacking.secret) })
      t.equal(res.statusCode, 403)
      const error = errorOf(t, res)
      t.equal(error.code, 'insufficient_scope')
      t.equal(error.requiredScope, route.scope)
      t.equal(error.message, `the API key is missing the required scope: ${route.scope}`)
      t.equal(res.headers['x-accepted-scopes'], route.scope, 'X-Accepted-Scopes names what the route needs')
      t.equal(res.headers['x-key-scopes'], lacking === readOnly ? 'studio:read' : 'stream:read')
    })
  }

  t.test('requiredScope appears only on insufficient_scope', async (t) => {
    const res = await gw.app.inject({ url: `/v1/studios/std_nope`, headers: bearer(readOnly.secret) })
    t.equal(res.statusCode, 404)
    t.notOk('requiredScope' in errorOf(t, res))
  })

  t.test('GET /v1/key needs no scope', async (t) => {
    const res = await gw.app.inject({ url: '/v1/key', headers: bearer(streamOnly.secret) })
    t.equal(res.statusCode, 200)
    t.same(res.json().scopes, ['stream:read'])
  })

  t.test('the scope is checked before the body: an under-scoped key with a bad body gets 403', async (t) => {
    const res = await gw.app.inject({
      method: 'POST',
      url: `/v1/studios/${studioId}/stream/go-live`,
      headers: { ...bearer(readOnly.secret), 'content-type': 'application/json' },
      payload: '{not json',
    })
    t.equal(res.statusCode, 403)
    t.equal(errorOf(t, res).code, 'insufficient_scope')
  })

  t.test('the key is checked before the scope: no key on a scoped route is 401', async (t) => {
    const res = await gw.app.inject({ url: '/v1/studios' })
    t.equal(res.statusCode, 401)
    t.equal(res.headers['x-accepted-scopes'], 'studio:read', 'error responses of scoped routes carry X-Accepted-Scopes')
  })

  t.test('the scope is checked before validation: an under-scoped key with a bad limit gets 403', async (t) => {
    const res = await gw.app.inject({ url: '/v1/studios?limit=abc', headers: bearer(streamOnly.secret) })
    t.equal(res.statusCode, 403)
  })
})
