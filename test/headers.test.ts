import t from 'tap'
import { bearer, startGateway } from './helpers/gateway.js'

// X-Content-Type-Options: nosniff on every answer; Cache-Control: no-store on every answer of
// /v1 (authenticated or refused) and on every error anywhere, whichever path produced it. (The
// answers to requests Node's HTTP parser rejects are checked in errors.test.ts.)

t.test('every answer carries nosniff; every /v1 answer and every error carries no-store', async (t) => {
  const gw = await startGateway(t, {
    studios: (store) => ({
      ...store.studios,
      listSessions: async () => {
        throw new Error('boom')
      },
    }),
  })
  const { secret, accountId } = await gw.key()
  const readOnly = await gw.key({ scopes: ['studio:read'] })
  const studioId = await gw.studio(accountId)
  const json = { ...bearer(secret), 'content-type': 'application/json' }
  const cases = [
    { name: '200 list', request: { url: '/v1/studios', headers: bearer(secret) }, status: 200 },
    { name: '200 studio', request: { url: `/v1/studios/${studioId}`, headers: bearer(secret) }, status: 200 },
    { name: '200 HEAD', request: { method: 'HEAD', url: '/v1/key', headers: bearer(secret) }, status: 200 },
    { name: '401 no key', request: { url: '/v1/studios' }, status: 401 },
    {
      name: '400 two keys',
      request: { url: '/v1/key', headers: { ...bearer(secret), 'x-api-key': 'x' } },
      status: 400,
    },
    {
      name: '403 scope',
      request: { url: `/v1/studios/${studioId}/stream`, headers: bearer(readOnly.secret) },
      status: 403,
    },
    { name: '400 query', request: { url: '/v1/studios?limit=abc', headers: bearer(secret) }, status: 400 },
    {
      name: '400 body',
      request: { method: 'POST', url: `/v1/studios/${studioId}/stream/go-live`, headers: json, payload: '{' },
      status: 400,
    },
    { name: '400 bad URL', request: { url: '/v1/studios/%zz' }, status: 400 },
    { name: '404 studio', request: { url: '/v1/studios/std_none', headers: bearer(secret) }, status: 404 },
    { name: '404 /v1 path, key', request: { url: '/v1/nope', headers: bearer(secret) }, status: 404 },
    { name: '404 path', request: { url: '/nope' }, status: 404 },
    {
      name: '503 writes off',
      request: { method: 'POST', url: `/v1/studios/${studioId}/stream/go-offline`, headers: bearer(secret) },
      status: 503,
    },
    { name: '500', request: { url: `/v1/studios/${studioId}/sessions`, headers: bearer(secret) }, status: 500 },
    { name: 'healthz', request: { url: '/healthz' }, status: 200 },
    { name: 'readyz', request: { url: '/readyz' }, status: 200 },
    { name: 'metrics', request: { url: '/metrics' }, status: 200 },
  ] as const
  for (const { name, request, status } of cases) {
    const res = await gw.app.inject(request)
    t.equal(res.statusCode, status, name)
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${name}: nosniff`)
    if (request.url.startsWith('/v1') || status >= 400) {
      t.equal(res.headers['cache-control'], 'no-store', `${name}: no-store`)
    }
  }
})
