import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { type Scope, scopes } from '../lib/api-keys.js'
import { bearer, errorOf, rememberSecret, startGateway, type TestGateway } from './helpers/gateway.js'
import { storedText } from './helpers/stored-rows.js'

/** Self-serve key management: POST/GET /v1/keys, GET /v1/keys/{keyId}, roll, revoke (issue 17). */

type Json = Record<string, unknown>

const post = (gw: TestGateway, secret: string, url: string, payload?: unknown, headers: Json = {}) =>
  gw.app.inject({
    method: 'POST',
    url,
    headers: { ...bearer(secret), ...headers } as Record<string, string>,
    ...(payload === undefined ? {} : { payload: payload as object }),
  })

const get = (gw: TestGateway, secret: string, url: string) => gw.app.inject({ url, headers: bearer(secret) })

async function createKey(gw: TestGateway, secret: string, body: Json) {
  const res = await post(gw, secret, '/v1/keys', body)
  if (res.statusCode === 201) rememberSecret(res.json().secret)
  return res
}

/** Every subset of `items`. */
function subsets<T>(items: readonly T[]): T[][] {
  return items.reduce<T[][]>((all, item) => [...all, ...all.map((subset) => [...subset, item])], [[]])
}

t.test('a key creates a narrower key: 201, the secret once, no-store, and the new key works', async (t) => {
  const gw = await startGateway(t)
  const caller = await gw.key()
  const res = await createKey(gw, caller.secret, { name: 'reader', scopes: ['studio:read'] })
  t.equal(res.statusCode, 201)
  t.equal(res.headers['cache-control'], 'no-store')
  const created = res.json()
  t.match(created, {
    id: /^key_/,
    name: 'reader',
    prefix: created.secret.slice(0, 12),
    scopes: ['studio:read'],
    status: 'active',
    expiresAt: null,
    revokedAt: null,
    lastUsedAt: null,
    rateLimits: null,
    createdBy: caller.id,
    replacedBy: null,
  })
  const self = await get(gw, created.secret, '/v1/key')
  t.equal(self.statusCode, 200, 'the new secret authenticates')
  t.same(self.json().scopes, ['studio:read'])
  t.equal((await get(gw, created.secret, '/v1/keys')).statusCode, 403, 'with only the scopes it was given')

  const shown = (await get(gw, caller.secret, `/v1/keys/${created.id}`)).json()
  t.notOk('secret' in shown, 'reading a key never shows its secret')
  t.notOk(JSON.stringify(shown).includes(created.secret.slice(8)), 'nor any part of it past the prefix')
  t.same(
    Object.keys(shown).sort(),
    Object.keys(created)
      .filter((k) => k !== 'secret')
      .sort(),
  )

  const events = gw.logs.filter((line) => line.event === 'key.created')
  t.match(events, [{ level: 30, keyId: created.id, by: caller.id, accountId: 'acct_test' }], 'logged at info with ids')
})

t.test('attenuation: every combination of scopes the caller lacks is 403 naming one it lacks', async (t) => {
  const gw = await startGateway(t)
  const others = scopes.filter((scope) => scope !== 'keys:write')
  const requests = subsets(scopes).filter((wanted) => wanted.length > 0)
  for (const held of subsets(others)) {
    const callerScopes: Scope[] = [...held, 'keys:write']
    const caller = await gw.key({ scopes: callerScopes })
    for (const wanted of requests) {
      const lacking = wanted.filter((scope) => !callerScopes.includes(scope))
      const res = await createKey(gw, caller.secret, { name: 'n', scopes: wanted })
      const label = `holding [${callerScopes}] asking [${wanted}]`
      if (lacking.length === 0) {
        t.equal(res.statusCode, 201, label)
        continue
      }
      t.equal(res.statusCode, 403, label)
      const error = errorOf(t, res)
      t.equal(error.code, 'insufficient_scope', label)
      t.equal(error.requiredScope, lacking[0], `${label}: names the first scope it lacks`)
    }
  }
  const listed = await gw.store.keys.list('acct_test')
  t.ok(
    listed.every((key) => key.createdBy === 'cli' || listed.find((k) => k.id === key.createdBy)),
    'every key made over the API names its maker',
  )
})

t.test('rate limits and expiry no looser than the caller’s: 400 otherwise', async (t) => {
  const gw = await startGateway(t, { env: { RATE_LIMIT_MAX: '600', RATE_LIMIT_WINDOW: '1m' } })
  const caller = await gw.key()
  const body = (extra: Json) => ({ name: 'limited', scopes: ['studio:read'], ...extra })
  const refused = async (extra: Json, field: RegExp, label: string) => {
    const res = await createKey(gw, caller.secret, body(extra))
    t.equal(res.statusCode, 400, label)
    t.match(errorOf(t, res), { code: 'invalid_request', message: field }, label)
  }
  await refused({ rateLimits: [{ max: 20, windowSeconds: 1 }] }, /rateLimits/, '20/s is 1200 a minute: above 600')
  await refused({ rateLimits: [{ max: 1000, windowSeconds: 3600 }] }, /rateLimits/, '1000/h allows 1000 in a minute')
  await refused({ rateLimits: [{ max: 601, windowSeconds: 60 }] }, /rateLimits/, 'one above the caller')
  await refused(
    {
      rateLimits: [
        { max: 1, windowSeconds: 60 },
        { max: 2, windowSeconds: 60 },
      ],
    },
    /each window once/,
    'a window twice',
  )
  await refused({ rateLimits: [{ max: 0, windowSeconds: 60 }] }, /rateLimits/, 'zero requests')
  await refused({ expiresAt: new Date(Date.now() - 1000).toISOString() }, /expiresAt/, 'an expiry in the past')
  await refused({ expiresAt: 'tomorrow' }, /expiresAt/, 'not a time')

  const within = await createKey(gw, caller.secret, body({ rateLimits: [{ max: 10, windowSeconds: 1 }] }))
  t.equal(within.statusCode, 201, '10/s is 600 a minute: allowed')
  t.same(within.json().rateLimits, [{ max: 10, windowSeconds: 1 }])

  const inHour = new Date(Date.now() + 3_600_000).toISOString()
  const limited = await gw.key({ expiresAt: inHour, rateLimits: [{ max: 100, windowMs: 60_000 }] })
  const inherited = await createKey(gw, limited.secret, body({}))
  t.equal(inherited.statusCode, 201)
  t.match(
    inherited.json(),
    { expiresAt: inHour, rateLimits: [{ max: 100, windowSeconds: 60 }] },
    'by default the caller’s own expiry and limits',
  )
  const later = new Date(Date.now() + 7_200_000).toISOString()
  const res = await createKey(gw, limited.secret, body({ expiresAt: later }))
  t.equal(res.statusCode, 400, 'a key cannot outlive the key that makes it')
  const looser = await createKey(gw, limited.secret, body({ rateLimits: [{ max: 200, windowSeconds: 60 }] }))
  t.equal(looser.statusCode, 400, 'nor get more than its per-key limit')

  const monthly = await gw.key({ rateLimits: [{ max: 100_000, windowMs: 30 * 86_400_000 }] })
  const shown = await get(gw, caller.secret, `/v1/keys/${monthly.id}`)
  t.equal(shown.statusCode, 200, 'a key given a 30-day window by the command line reads as documented')
  t.same(shown.json().rateLimits, [{ max: 100_000, windowSeconds: 2_592_000 }])
})

t.test('bad bodies are 400 invalid_request', async (t) => {
  const gw = await startGateway(t)
  const { secret } = await gw.key()
  const bodies: unknown[] = [
    {},
    { name: 'x' },
    { name: '', scopes: ['studio:read'] },
    { name: 'x', scopes: [] },
    { name: 'x', scopes: ['admin'] },
    { name: 'x', scopes: ['studio:read', 'studio:read'] },
    { name: 'x', scopes: ['studio:read'], colour: 'red' },
    { name: 'x'.repeat(101), scopes: ['studio:read'] },
    { name: 'a\u0000b', scopes: ['studio:read'] },
  ]
  for (const body of bodies) {
    const res = await post(gw, secret, '/v1/keys', body)
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(errorOf(t, res).code, 'invalid_request')
  }
  const keyId = (await gw.key()).id
  for (const body of [{ gracePeriod: -1 }, { gracePeriod: 604_801 }, { gracePeriod: '1h' }, { other: 1 }]) {
    const res = await post(gw, secret, `/v1/keys/${keyId}/roll`, body)
    t.equal(res.statusCode, 400, `roll ${JSON.stringify(body)}`)
  }
  t.equal((await post(gw, secret, `/v1/keys/${keyId}/revoke`, { now: true })).statusCode, 400, 'revoke takes no body')
})

t.test('the list pages with signed cursors and never shows a secret or a hash', async (t) => {
  const gw = await startGateway(t)
  const caller = await gw.key()
  const secrets: string[] = []
  for (let i = 0; i < 4; i++)
    secrets.push((await createKey(gw, caller.secret, { name: `k${i}`, scopes: ['studio:read'] })).json().secret)
  await gw.key({ accountId: 'acct_other' })
  const seen: string[] = []
  let cursor: string | null = null
  do {
    const query: string = cursor === null ? '?limit=2' : `?limit=2&cursor=${encodeURIComponent(cursor)}`
    const res = await get(gw, caller.secret, `/v1/keys${query}`)
    t.equal(res.statusCode, 200)
    const page = res.json()
    t.ok(page.data.length <= 2)
    for (const key of page.data) seen.push(key.id)
    for (const secret of secrets) t.notOk(res.body.includes(secret.slice(8, 40)), 'no secret in a page')
    t.notOk(/"hash"/.test(res.body), 'no hash in a page')
    cursor = page.nextCursor
  } while (cursor !== null)
  t.equal(seen.length, 5, 'the caller and the four it made; not the other account’s')
  t.equal(new Set(seen).size, 5)

  const first = (await get(gw, caller.secret, '/v1/keys?limit=1')).json()
  const other = await gw.key({ accountId: 'acct_other' })
  for (const [label, url, secret] of [
    ['a tampered cursor', `/v1/keys?cursor=${first.nextCursor}x`, caller.secret],
    ['another account’s cursor', `/v1/keys?cursor=${first.nextCursor}`, other.secret],
    ['limit 0', '/v1/keys?limit=0', caller.secret],
    ['limit 101', '/v1/keys?limit=101', caller.secret],
  ] as const) {
    const res = await get(gw, secret, url)
    t.equal(res.statusCode, 400, label)
    t.equal(errorOf(t, res).code, 'invalid_request', label)
  }
  t.equal((await get(gw, caller.secret, '/v1/keys')).json().data.length, 5, 'limit 20 by default')
})

t.test('another account’s key answers 404 on every key route, byte for byte like a missing one', async (t) => {
  const gw = await startGateway(t)
  const caller = await gw.key()
  const foreign = await gw.key({ accountId: 'acct_other' })
  const requests = [
    ['GET', (id: string) => `/v1/keys/${id}`],
    ['POST', (id: string) => `/v1/keys/${id}/roll`],
    ['POST', (id: string) => `/v1/keys/${id}/revoke`],
  ] as const
  const withoutId = (body: string) => body.replace(/"requestId":"[^"]+"/, '')
  for (const [method, url] of requests) {
    const missing = await gw.app.inject({ method, url: url('key_doesNotExist0000'), headers: bearer(caller.secret) })
    const other = await gw.app.inject({ method, url: url(foreign.id), headers: bearer(caller.secret) })
    t.equal(other.statusCode, 404, `${method} ${url('{keyId}')}`)
    t.equal(errorOf(t, other).code, 'not_found')
    t.equal(withoutId(other.body), withoutId(missing.body), `${method} ${url('{keyId}')}: the same body`)
    const headersOf = (res: typeof other) => {
      // The budget left and its reset move on with each request; the rest must agree.
      return Object.fromEntries(
        Object.entries(res.headers).filter(
          ([name]) => !/^(x-request-id|date|ratelimit(-remaining|-reset)?)$/.test(name),
        ),
      )
    }
    t.same(headersOf(other), headersOf(missing), 'the same headers')
  }
  const still = await get(gw, foreign.secret, '/v1/key')
  t.equal(still.statusCode, 200, 'the other account’s key was neither rolled nor revoked')
})

t.test('a rolled key’s old secret works during the grace period and is refused after it', async (t) => {
  const gw = await startGateway(t)
  const admin = await gw.key()
  const made = (await createKey(gw, admin.secret, { name: 'worker', scopes: ['studio:read', 'keys:write'] })).json()
  const rolled = await post(gw, made.secret, `/v1/keys/${made.id}/roll`, { gracePeriod: 2 })
  t.equal(rolled.statusCode, 201, 'a key may roll itself')
  t.equal(rolled.headers['cache-control'], 'no-store')
  const successor = rolled.json()
  rememberSecret(successor.secret)
  t.match(successor, { name: 'worker', scopes: ['studio:read', 'keys:write'], createdBy: made.id, replacedBy: null })
  t.not(successor.id, made.id)
  t.equal((await get(gw, successor.secret, '/v1/key')).statusCode, 200, 'the new secret works at once')
  t.equal((await get(gw, made.secret, '/v1/key')).statusCode, 200, 'the old one still works, within its grace')
  const old = (await get(gw, admin.secret, `/v1/keys/${made.id}`)).json()
  t.equal(old.replacedBy, successor.id)
  t.ok(Date.parse(old.expiresAt) - Date.now() <= 2000, 'the old key expires when the grace period ends')

  const again = await post(gw, admin.secret, `/v1/keys/${made.id}/roll`)
  t.equal(again.statusCode, 400, 'a rolled key cannot be rolled again')
  t.match(errorOf(t, again).message, successor.id, 'the message names its successor')

  let refused = false
  for (let i = 0; i < 60 && !refused; i++) {
    const res = await get(gw, made.secret, '/v1/key')
    refused = res.statusCode === 401
    if (refused) t.match(errorOf(t, res), { code: 'invalid_key', message: /expired/ })
    else await sleep(100)
  }
  t.ok(refused, 'the old secret is refused once the grace period ended')
  t.equal((await get(gw, successor.secret, '/v1/key')).statusCode, 200, 'the successor keeps working')
  // The expiry is logged by a timer at the end of the grace period, around the first refusal.
  for (let i = 0; i < 20 && !gw.logs.some((line) => line.event === 'key.expired_by_roll'); i++) await sleep(100)
  t.match(
    gw.logs.filter((line) => typeof line.event === 'string' && line.event.startsWith('key.')).map((line) => line.event),
    ['key.created', 'key.rolled', 'key.expired_by_roll'],
  )

  const instant = (await createKey(gw, admin.secret, { name: 'now', scopes: ['studio:read'] })).json()
  const at0 = await post(gw, admin.secret, `/v1/keys/${instant.id}/roll`, { gracePeriod: 0 })
  rememberSecret(at0.json().secret)
  t.equal((await get(gw, instant.secret, '/v1/key')).statusCode, 401, 'grace 0: refused at once')
  const defaulted = (await createKey(gw, admin.secret, { name: 'day', scopes: ['studio:read'] })).json()
  const byDefault = await post(gw, admin.secret, `/v1/keys/${defaulted.id}/roll`)
  rememberSecret(byDefault.json().secret)
  const grace = Date.parse((await get(gw, admin.secret, `/v1/keys/${defaulted.id}`)).json().expiresAt) - Date.now()
  t.ok(grace > 23 * 3_600_000 && grace <= 24 * 3_600_000, 'the default grace period is 24 h')
})

t.test('a revoked key is refused from that moment; revoking again answers it unchanged', async (t) => {
  const gw = await startGateway(t)
  const admin = await gw.key()
  const made = (await createKey(gw, admin.secret, { name: 'temp', scopes: ['keys:write'] })).json()
  t.equal((await get(gw, made.secret, '/v1/key')).statusCode, 200, 'cached as valid')
  const revoked = await post(gw, admin.secret, `/v1/keys/${made.id}/revoke`)
  t.equal(revoked.statusCode, 200)
  t.match(revoked.json(), { id: made.id, status: 'revoked', revokedAt: String })
  const res = await get(gw, made.secret, '/v1/key')
  t.equal(res.statusCode, 401)
  t.match(errorOf(t, res), { code: 'invalid_key', message: /revoked/ })
  const twice = await post(gw, admin.secret, `/v1/keys/${made.id}/revoke`)
  t.same(twice.json(), revoked.json(), 'the first revocation time is kept')
  t.equal((await post(gw, admin.secret, `/v1/keys/${made.id}/roll`)).statusCode, 400, 'a revoked key cannot be rolled')

  const self = (await createKey(gw, admin.secret, { name: 'self', scopes: ['keys:write'] })).json()
  t.equal((await post(gw, self.secret, `/v1/keys/${self.id}/revoke`)).statusCode, 200, 'a key may revoke itself')
  t.equal((await get(gw, self.secret, '/v1/key')).statusCode, 401)
  t.equal(gw.logs.filter((line) => line.event === 'key.revoked').length, 2, 'each revocation logged once')
})

t.test('a key cannot roll or revoke a key holding a scope it lacks', async (t) => {
  const gw = await startGateway(t)
  const admin = await gw.key()
  const narrow = (await createKey(gw, admin.secret, { name: 'narrow', scopes: ['keys:write', 'keys:read'] })).json()
  for (const action of ['roll', 'revoke']) {
    const res = await post(gw, narrow.secret, `/v1/keys/${admin.id}/${action}`)
    t.equal(res.statusCode, 403, action)
    t.equal(errorOf(t, res).requiredScope, 'studio:read', `${action}: names the first scope it lacks`)
  }
  t.equal((await get(gw, admin.secret, '/v1/key')).statusCode, 200, 'the wider key is untouched')
})

t.test(
  'Idempotency-Key: a retried create answers the same key and secret; nothing stores a secret in clear',
  async (t) => {
    const gw = await startGateway(t)
    const admin = await gw.key()
    const headers = { 'idempotency-key': 'create-worker-7f3a' }
    const body = { name: 'worker', scopes: ['studio:read'] }
    const first = await post(gw, admin.secret, '/v1/keys', body, headers)
    t.equal(first.statusCode, 201)
    const created = first.json()
    rememberSecret(created.secret)
    const retry = await post(gw, admin.secret, '/v1/keys', body, headers)
    t.equal(retry.statusCode, 201)
    t.equal(retry.headers['idempotent-replayed'], 'true')
    t.equal(retry.body, first.body, 'the same answer, secret included')
    const other = await post(gw, admin.secret, '/v1/keys', { ...body, name: 'other' }, headers)
    t.equal(other.statusCode, 400, 'the same Idempotency-Key for another body')
    t.equal(
      (await get(gw, admin.secret, '/v1/keys')).json().data.length,
      2,
      'one key made for the create and its retry',
    )

    const rollHeaders = { 'idempotency-key': 'roll-worker-1' }
    const rolled = await post(gw, admin.secret, `/v1/keys/${created.id}/roll`, { gracePeriod: 60 }, rollHeaders)
    t.equal(rolled.statusCode, 201)
    rememberSecret(rolled.json().secret)
    const rollRetry = await post(gw, admin.secret, `/v1/keys/${created.id}/roll`, { gracePeriod: 60 }, rollHeaders)
    t.equal(rollRetry.body, rolled.body, 'a retried roll answers the same successor')

    const stored = await storedText(gw.storeEnv)
    for (const secret of [admin.secret, created.secret, rolled.json().secret]) {
      t.notOk(stored.includes(secret.slice(8, 40)), `no secret (${secret.slice(0, 12)}…) in any stored row`)
    }
    for (const key of ['create-worker-7f3a', 'roll-worker-1']) {
      t.notOk(stored.includes(key), `the Idempotency-Key ${key} is not stored either`)
    }
    t.ok(stored.includes(created.id), 'the scan reads the rows (the key ids are there)')
    t.notOk(/sk_live_[0-9A-Za-z]{8}/.test(stored), 'nothing key-shaped beyond a prefix')
  },
)

t.test('key management is not behind the write gate', async (t) => {
  const gw = await startGateway(t, { env: { WRITES_ENABLED: 'false' } })
  const admin = await gw.key()
  const res = await createKey(gw, admin.secret, { name: 'ungated', scopes: ['studio:read'] })
  t.equal(res.statusCode, 201)
})

t.test('a key manages keys of its own mode only: a test key mints test keys and cannot see live ones', async (t) => {
  const gw = await startGateway(t)
  const live = await gw.key()
  const test = await gw.key({ mode: 'test' })
  const made = await createKey(gw, test.secret, { name: 'sandbox ci', scopes: ['studio:read', 'keys:write'] })
  t.equal(made.statusCode, 201)
  t.match(made.json(), { mode: 'test', secret: /^sk_test_/ }, 'a test key mints a test key')
  const rolled = await post(gw, made.json().secret, `/v1/keys/${made.json().id}/roll`, { gracePeriod: 0 })
  rememberSecret(rolled.json().secret)
  t.match(rolled.json(), { mode: 'test', secret: /^sk_test_/ }, 'and rolling it keeps it a test key')
  const missing = await get(gw, test.secret, '/v1/keys/key_doesNotExist0000')
  for (const [method, url] of [
    ['GET', `/v1/keys/${live.id}`],
    ['POST', `/v1/keys/${live.id}/roll`],
    ['POST', `/v1/keys/${live.id}/revoke`],
  ] as const) {
    const res = await gw.app.inject({ method, url, headers: bearer(test.secret) })
    t.equal(res.statusCode, 404, `${method} ${url} with a test key`)
    t.equal(res.json().error.message, missing.json().error.message)
  }
  const listed = (await get(gw, test.secret, '/v1/keys')).json().data.map((key: { id: string }) => key.id)
  t.notOk(listed.includes(live.id), 'the list of a test key holds no live key')
  t.ok((await get(gw, live.secret, '/v1/keys')).json().data.every((key: { mode: string }) => key.mode === 'live'))
})
