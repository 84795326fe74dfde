import createClient, { type Middleware } from 'openapi-fetch'
import t from 'tap'
import type { components, paths } from '../clients/typescript/src/openapi.generated.js'
import { fetchViolations } from './helpers/contract.js'
import { rememberSecret, startGateway } from './helpers/gateway.js'

/**
 * End to end, through a listening server, with the client typed from openapi.yaml: a drift between
 * the document and what these calls expect breaks `npm run typecheck`; a drift between the
 * document and what the server answers fails the contract check every response goes through.
 */

type Studio = components['schemas']['Studio']

t.test('the typed client drives every operation of a listening gateway', async (t) => {
  const gw = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
  const address = await gw.app.listen({ port: 0, host: '127.0.0.1' })
  const { secret, id: keyId } = await gw.key({ accountId: 'acct_e2e' })
  const studioId = await gw.studio('acct_e2e', 'Main Stage')
  await gw.studio('acct_e2e', 'Side Stage')

  const checked: string[] = []
  const conforms: Middleware = {
    async onResponse({ request, response }) {
      for (const violation of await fetchViolations(request.method, request.url, response)) {
        t.fail(`contract: ${violation}`)
      }
      checked.push(`${request.method} ${new URL(request.url).pathname} ${response.status}`)
    },
  }
  const client = createClient<paths>({ baseUrl: address, headers: { authorization: `Bearer ${secret}` } })
  client.use(conforms)

  const page = await client.GET('/v1/studios', { params: { query: { limit: 1 } } })
  t.equal(page.response.status, 200)
  const first: Studio | undefined = page.data?.data[0]
  t.equal(first?.name, 'Main Stage')
  t.type(page.data?.nextCursor, 'string')
  const next = await client.GET('/v1/studios', { params: { query: { cursor: page.data?.nextCursor ?? '' } } })
  t.same(
    next.data?.data.map((studio) => studio.name),
    ['Side Stage'],
  )
  t.equal(next.data?.nextCursor, null)

  const studio = await client.GET('/v1/studios/{studioId}', { params: { path: { studioId } } })
  t.same(studio.data, { id: studioId, name: 'Main Stage', createdAt: first?.createdAt })
  t.equal(studio.response.headers.get('x-key-scopes'), 'studio:read, stream:read, stream:golive, keys:read, keys:write')

  const live = await client.POST('/v1/studios/{studioId}/stream/go-live', {
    params: { path: { studioId } },
    body: { title: 'Launch day' },
  })
  t.equal(live.data?.status, 'live')
  t.equal(live.data?.title, 'Launch day')
  const stream = await client.GET('/v1/studios/{studioId}/stream', { params: { path: { studioId } } })
  t.equal(stream.data?.startedAt, live.data?.startedAt)
  const offline = await client.POST('/v1/studios/{studioId}/stream/go-offline', { params: { path: { studioId } } })
  t.equal(offline.data?.status, 'offline')
  t.equal(offline.data?.startedAt, null)

  const sessions = await client.GET('/v1/studios/{studioId}/sessions', { params: { path: { studioId } } })
  t.equal(sessions.data?.data.length, 1)
  t.equal(sessions.data?.data[0]?.title, 'Launch day')

  const key = await client.GET('/v1/key', { params: { header: { 'X-Request-Id': 'e2e-key-1' } } })
  t.equal(key.data?.id, keyId)
  t.same(key.data?.scopes, ['studio:read', 'stream:read', 'stream:golive', 'keys:read', 'keys:write'])
  t.equal(key.response.headers.get('x-request-id'), 'e2e-key-1', 'the typed X-Request-Id parameter is echoed')

  // The key API, typed from the document: create (the secret once), read, roll, revoke, list.
  const created = await client.POST('/v1/keys', { body: { name: 'e2e', scopes: ['studio:read'] } })
  t.equal(created.response.status, 201)
  const newKey = created.data as NonNullable<typeof created.data>
  rememberSecret(newKey.secret)
  const read = await client.GET('/v1/keys/{keyId}', { params: { path: { keyId: newKey.id } } })
  t.equal(read.data?.name, 'e2e')
  const rolled = await client.POST('/v1/keys/{keyId}/roll', {
    params: { path: { keyId: newKey.id } },
    body: { gracePeriod: 0 },
  })
  rememberSecret(rolled.data?.secret ?? '')
  t.equal(rolled.response.status, 201)
  const revoked = await client.POST('/v1/keys/{keyId}/revoke', { params: { path: { keyId: rolled.data?.id ?? '' } } })
  t.equal(revoked.data?.status, 'revoked')
  const listed = await client.GET('/v1/keys', { params: { query: { limit: 100 } } })
  t.equal(listed.data?.data.length, 3, 'the caller, the key it made and its successor')

  // Errors come back typed by status: the code is one of the codes the document lists for it.
  const missing = await client.GET('/v1/studios/{studioId}', { params: { path: { studioId: 'std_nope' } } })
  t.equal(missing.response.status, 404)
  t.equal(missing.error?.error.code, 'not_found')
  const anonymous = createClient<paths>({ baseUrl: address })
  anonymous.use(conforms)
  const unauthorized = await anonymous.GET('/v1/key')
  t.equal(unauthorized.response.status, 401)
  t.equal(unauthorized.error?.error.code, 'invalid_key')
  t.equal(unauthorized.response.headers.get('www-authenticate'), 'Bearer realm="studio-gateway"')
  const readOnly = await gw.key({ accountId: 'acct_e2e', scopes: ['studio:read'] })
  const forbidden = await client.POST('/v1/studios/{studioId}/stream/go-live', {
    params: { path: { studioId } },
    headers: { authorization: `Bearer ${readOnly.secret}` },
  })
  t.equal(forbidden.response.status, 403)
  t.equal(forbidden.error?.error.requiredScope, 'stream:golive')

  t.equal(checked.length, 16, 'every response went through the contract check')
})
