import t, { type Test } from 'tap'
import { badGateway, INTERNAL_MESSAGE } from '../../../lib/errors.js'
import { fetchViolations } from '../../../test/helpers/contract.js'
import { failingStudios, keyStoreCorrupt, keyStoreDown } from '../../../test/helpers/failing-stores.js'
import { type GatewayOptions, rememberSecret, startGateway } from '../../../test/helpers/gateway.js'
import type { ClientEvent, Scope } from '../src/index.js'
import { failure, type HarnessOptions, harness } from './helpers/harness.js'

/**
 * The client against the real gateway (the app of `app.ts` listening on a port, on a fresh SQLite
 * store): every operation, and every error code the gateway can produce, each earned by the
 * request or the failing dependency that earns it. Every answer is also checked against
 * openapi.yaml. Retries run on the harness's fake clock, so none of them sleeps.
 */

/** The global fetch, checking each answer against openapi.yaml. */
const checkedFetch =
  (t: Test): typeof fetch =>
  async (input, init) => {
    const response = await fetch(input, init)
    for (const violation of await fetchViolations(init?.method ?? 'GET', String(input), response)) {
      t.fail(`contract: ${violation}`)
    }
    return response
  }

/** A listening gateway, a key of `acct_client` holding `scopes` (every scope by default) and a studio. */
async function gateway(t: Test, options: GatewayOptions = {}, scopes?: Parameters<typeof gwKey>[1]) {
  const gw = await startGateway(t, options)
  const baseUrl = await gw.app.listen({ port: 0, host: '127.0.0.1' })
  const { secret, id } = await gwKey(gw, scopes)
  const studioId = await gw.studio('acct_client', 'Main Stage')
  const client = (more: HarnessOptions = {}) => harness(baseUrl, { apiKey: secret, fetch: checkedFetch(t), ...more })
  return { gw, baseUrl, secret, keyId: id, studioId, client }
}

function gwKey(gw: Awaited<ReturnType<typeof startGateway>>, scopes?: Scope[]) {
  return gw.key({ accountId: 'acct_client', ...(scopes ? { scopes } : {}) })
}

const attemptsOf = (events: ClientEvent[]) => events.filter((event) => event.type === 'attempt')

t.test('every operation, with pagination, through a listening gateway', async (t) => {
  const { gw, keyId, studioId, client } = await gateway(t, { env: { WRITES_ENABLED: 'true' } })
  await gw.studio('acct_client', 'Side Stage')
  await gw.studio('acct_client', 'Rooftop')
  await gw.studio('acct_other', 'Not yours')
  const h = client({ requestIds: true })
  const api = h.client

  // Studios created within the same millisecond have no fixed order between them: compare with one page of all.
  const everything = (await api.listStudios({ limit: 100 })).data.map((studio) => studio.name)
  t.same([...everything].sort(), ['Main Stage', 'Rooftop', 'Side Stage'], 'only the account’s studios')
  const page = await api.listStudios({ limit: 2 })
  t.same(
    page.data.map((studio) => studio.name),
    everything.slice(0, 2),
  )
  t.type(page.nextCursor, 'string')
  const all: string[] = []
  for await (const studio of api.studios.all({ limit: 1 })) all.push(studio.name)
  t.same(all, everything, 'studios.all follows nextCursor, one per page, to the last')

  t.match(await api.getStudio(studioId), { id: studioId, name: 'Main Stage' })
  t.match(await api.getStream(studioId), { studioId, status: 'offline', title: null })

  const live = await api.goLive(studioId, { title: 'Launch day' })
  t.match(live, { studioId, status: 'live', title: 'Launch day' })
  t.match(await api.goLive(studioId), { status: 'live', startedAt: live.startedAt }, 'go-live is idempotent')
  t.match(await api.goOffline(studioId), { status: 'offline', startedAt: null })
  await api.goLive(studioId)
  await api.goOffline(studioId)

  const sessions = await api.listSessions(studioId, { limit: 1 })
  t.equal(sessions.data.length, 1)
  t.type(sessions.nextCursor, 'string')
  const sessionIds = (await api.listSessions(studioId, { limit: 100 })).data.map((session) => session.id)
  t.equal(sessionIds.length, 2, 'two broadcasts ended')
  const iterated: string[] = []
  for await (const session of api.sessions.all(studioId, { limit: 1 })) iterated.push(session.id)
  t.same(iterated, sessionIds, 'sessions.all: every page, in the list’s order')

  t.match(await api.getKey(), {
    id: keyId,
    accountId: 'acct_client',
    scopes: ['studio:read', 'stream:read', 'stream:golive', 'keys:read', 'keys:write'],
  })

  // The gateway echoed each id the client sent; each write carried its own Idempotency-Key.
  const attempts = attemptsOf(h.events)
  const successes = h.events.filter((event) => event.type === 'success')
  t.equal(successes.length, attempts.length, 'every call succeeded at its first attempt')
  t.same(
    successes.map((event) => event.requestId),
    attempts.map((event) => event.requestId),
  )
  t.ok(
    attempts.every((event) => (event.method === 'POST') === (event.idempotencyKey !== undefined)),
    'an Idempotency-Key on each write, none on reads',
  )
})

t.test('the key operations: create, list, read, roll and revoke through a listening gateway', async (t) => {
  const { gw, baseUrl, keyId, client } = await gateway(t)
  const h = client()
  const api = h.client

  const created = await api.createKey({ name: 'dashboard', scopes: ['studio:read'] })
  rememberSecret(created.secret)
  t.match(created, { name: 'dashboard', scopes: ['studio:read'], status: 'active', createdBy: keyId })
  t.match(created.secret, /^sk_live_/, 'the secret, once')
  const dashboard = harness(baseUrl, { apiKey: created.secret, fetch: checkedFetch(t) }).client
  t.equal((await dashboard.listStudios()).data.length, 1, 'the new key works')

  const read = await api.getKeyById(created.id)
  t.notOk('secret' in read, 'reading a key never shows its secret')
  const { secret: _, ...shown } = created
  t.same({ ...read, lastUsedAt: null }, shown, 'the key as created, but its secret (and its first use)')
  const page = await api.listKeys({ limit: 1 })
  t.equal(page.data.length, 1)
  t.type(page.nextCursor, 'string')
  const ids: string[] = []
  for await (const key of api.keys.all({ limit: 1 })) ids.push(key.id)
  t.same(ids.sort(), [keyId, created.id].sort(), 'keys.all follows nextCursor to the end')

  const rolled = await api.rollKey(created.id, { gracePeriod: 60 })
  rememberSecret(rolled.secret)
  t.match(rolled, { name: 'dashboard', scopes: ['studio:read'] })
  t.not(rolled.secret, created.secret)
  t.equal((await api.getKeyById(created.id)).replacedBy, rolled.id)
  const revoked = await api.revokeKey(created.id)
  t.equal(revoked.status, 'revoked')
  const refused = await failure(t, dashboard.listStudios())
  t.match(refused, { code: 'invalid_key', status: 401 }, 'the revoked secret is refused')

  const narrow = await failure(t, dashboard.createKey({ name: 'x', scopes: ['keys:write'] }))
  t.equal(narrow.code, 'invalid_key')
  const reader = harness(baseUrl, { apiKey: rolled.secret, fetch: checkedFetch(t) }).client
  const attenuated = await failure(t, reader.createKey({ name: 'wider', scopes: ['stream:golive'] }))
  t.match(attenuated, { code: 'insufficient_scope', status: 403, requiredScope: 'keys:write' })
  t.match(await failure(t, api.getKeyById('key_doesNotExist0000')), { code: 'not_found', status: 404 })
  await t.rejects(() => api.getKeyById(''), TypeError, 'an empty id is refused before anything is sent')
  t.ok(gw.logs.some((line) => line.event === 'key.rolled'))

  const attempts = attemptsOf(h.events)
  t.ok(
    attempts
      .filter((event) => event.operation === 'createKey' || event.operation === 'rollKey')
      .every((event) => event.idempotencyKey !== undefined),
    'creating and rolling carry an Idempotency-Key, so a retry cannot mint twice',
  )
})

t.test('4xx codes: one attempt each, the envelope surfaced field for field', async (t) => {
  const { gw, baseUrl, studioId, client } = await gateway(t, { env: { WRITES_ENABLED: 'true' } })

  const h = client()
  const badLimit = await failure(t, h.client.listStudios({ limit: 0 }))
  t.match(badLimit, { code: 'invalid_request', status: 400, attempts: 1, requestId: /^req_[0-9a-f]{16}$/ })
  t.match(badLimit.message, /limit/)
  const forged = await failure(t, h.client.listSessions(studioId, { cursor: 'forged' }))
  t.match(forged, { code: 'invalid_request', status: 400, attempts: 1 })

  const missing = await failure(t, h.client.getStudio('std_doesNotExist'))
  t.match(missing, { code: 'not_found', status: 404, attempts: 1, requiredScope: undefined })
  const foreign = await failure(t, h.client.getStream(await gw.studio('acct_other')))
  t.match(foreign, { code: 'not_found', status: 404, attempts: 1 }, 'another account’s studio reads as missing')

  const unknownKey = harness(baseUrl, { apiKey: 'sk_live_thisIsNotAKeyOfThisGateway', fetch: checkedFetch(t) })
  const unauthorized = await failure(t, unknownKey.client.getKey({ requestId: 'client-trace-401' }))
  t.match(unauthorized, { code: 'invalid_key', status: 401, attempts: 1, requestId: 'client-trace-401' })

  const readOnly = await gwKey(gw, ['studio:read'])
  const r = harness(baseUrl, { apiKey: readOnly.secret, fetch: checkedFetch(t) })
  const golive = await failure(t, r.client.goLive(studioId, { title: 'Nope' }))
  t.match(golive, { code: 'insufficient_scope', status: 403, attempts: 1, requiredScope: 'stream:golive' })
  const stream = await failure(t, r.client.getStream(studioId))
  t.match(stream, { code: 'insufficient_scope', status: 403, attempts: 1, requiredScope: 'stream:read' })

  for (const give of [h, unknownKey, r]) {
    t.ok(
      give.events.filter((event) => event.type === 'give-up').every((event) => event.reason === 'not_retryable'),
      'every 4xx gives up at once',
    )
    t.equal(give.delays().length, 0, 'and waits for nothing')
  }
})

t.test('429 rate_limited: retried after the gateway’s Retry-After, surfaced past the cap', async (t) => {
  const { client } = await gateway(t, { env: { RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW: '30s' } })
  const h = client()
  await h.client.getKey()
  await h.client.getKey()
  const limited = await failure(t, h.client.getKey())
  t.match(limited, { code: 'rate_limited', status: 429, attempts: 3, transient: true })
  // The window and at most one slot (1/20 of it) more.
  t.ok(limited.retryAfter !== undefined && limited.retryAfter >= 1 && limited.retryAfter <= 32, 'Retry-After in s')
  const waited = h.events.flatMap((event) => (event.type === 'retry' ? [event] : []))
  t.same(
    waited.map((event) => event.delayMs),
    waited.map((event) => (event.error.retryAfter ?? 0) * 1000),
    'each wait is the Retry-After of the answer before it (the fake clock moves, the window does not)',
  )

  const impatient = client({ retry: { maxRetryAfterMs: 500 } })
  const surfaced = await failure(t, impatient.client.listStudios())
  t.match(surfaced, { code: 'rate_limited', attempts: 1 })
  t.match(impatient.events.at(-1), { type: 'give-up', reason: 'retry_after_too_long' })
})

t.test('the client reads the RateLimit and RateLimit-Policy fields of every answer', async (t) => {
  const { gw, client } = await gateway(t, { env: { RATE_LIMIT_MAX: '5', RATE_LIMIT_WINDOW: '1m' } })
  const h = client()
  t.equal(h.client.rateLimit, undefined, 'nothing before the first answer')
  await h.client.getKey()
  t.same(h.client.rateLimit, {
    policy: 'default',
    limit: 5,
    remaining: 4,
    resetSeconds: h.client.rateLimit?.resetSeconds,
    policies: [{ name: 'default', quota: 5, windowSeconds: 60 }],
  })
  t.ok((h.client.rateLimit?.resetSeconds ?? 0) >= 60, 'more quota in about a window')

  const { secret } = await gw.key({
    accountId: 'acct_client',
    rateLimits: [
      { max: 1, windowMs: 1000 },
      { max: 3, windowMs: 60_000 },
    ],
  })
  const strict = client({ apiKey: secret, retry: { maxAttempts: 1 } })
  await strict.client.getKey()
  t.match(strict.client.rateLimit, { policy: '1s', limit: 1, remaining: 0 }, 'the policy that applied, by name')
  t.same(
    strict.client.rateLimit?.policies.map((policy) => [policy.name, policy.quota, policy.windowSeconds]),
    [
      ['1s', 1, 1],
      ['1m', 3, 60],
    ],
  )
  const limited = await failure(t, strict.client.getKey())
  t.match(limited, { code: 'rate_limited', rateLimit: { policy: '1s', remaining: 0 } })
  t.equal(limited.rateLimit?.resetSeconds, limited.retryAfter, 'the wait of the field is the Retry-After')
})

t.test('503 write_disabled: one attempt, although the write carried an Idempotency-Key', async (t) => {
  const { studioId, client } = await gateway(t)
  const h = client()
  const error = await failure(t, h.client.goLive(studioId, { title: 'Launch' }))
  t.match(error, { code: 'write_disabled', status: 503, attempts: 1, retryAfter: undefined, transient: false })
  t.type(attemptsOf(h.events)[0]?.idempotencyKey, 'string')
  t.match(await failure(t, h.client.goOffline(studioId)), { code: 'write_disabled', attempts: 1 })
})

t.test('503 unavailable (key verification down): retried with backoff, at least Retry-After apart', async (t) => {
  const { client } = await gateway(t, { keys: keyStoreDown })
  const h = client()
  const error = await failure(t, h.client.getKey())
  t.match(error, { code: 'unavailable', status: 503, attempts: 3, retryAfter: 1, requestId: /^req_/ })
  t.same(h.delays(), [1000, 1000], 'the gateway’s Retry-After: 1 outweighs 125 and 250 ms of backoff')
  t.match(h.events.at(-1), { type: 'give-up', reason: 'attempts_exhausted' })
})

t.test('500 internal (a corrupt key record): retried, the generic message kept', async (t) => {
  const { studioId, client } = await gateway(t, { keys: keyStoreCorrupt })
  const h = client({ requestIds: true })
  const error = await failure(t, h.client.getStudio(studioId))
  t.match(error, { code: 'internal', status: 500, attempts: 3, message: INTERNAL_MESSAGE })
  t.equal(error.requestId, attemptsOf(h.events).at(-1)?.requestId, 'the id of the last attempt, echoed')
  t.same(h.delays(), [125, 250])
})

t.test('502 bad_gateway (a failing studio service): reads and keyed writes retried', async (t) => {
  const { studioId, client } = await gateway(t, {
    env: { WRITES_ENABLED: 'true' },
    studios: (store) => failingStudios(() => badGateway('the studio service answered 502'))(store.studios),
  })
  const h = client()
  const read = await failure(t, h.client.listStudios())
  t.match(read, { code: 'bad_gateway', status: 502, attempts: 3, message: 'the studio service answered 502' })

  const write = client()
  const error = await failure(t, write.client.goLive(studioId))
  t.match(error, { code: 'bad_gateway', attempts: 3 })
  const keys = attemptsOf(write.events).map((event) => event.idempotencyKey)
  t.equal(keys.length, 3)
  t.equal(new Set(keys).size, 1, 'one Idempotency-Key for the three attempts of the call')

  const unkeyed = client({ idempotencyKeys: false })
  t.match(await failure(t, unkeyed.client.goOffline(studioId)), { code: 'bad_gateway', attempts: 1 })
  t.match(unkeyed.events.at(-1), { type: 'give-up', reason: 'write_without_idempotency_key' })
})
