import t from 'tap'
import { unavailable } from '../lib/errors.js'
import { createAnswerSealer } from '../lib/sealed-answers.js'
import type { StudioService } from '../stores/types.js'
import { bearer, errorOf, startGateway, type TestGateway } from './helpers/gateway.js'

/** What a record of `idempotencyKey` is stored under: its HMAC under the store's secret, never the key. */
async function storedAs(gw: TestGateway, idempotencyKey: string): Promise<string> {
  // Made by the gateway at start: the value offered here is never stored.
  const secret = await gw.store.settings.getOrCreate('idempotency_secret', () => 'unused')
  return createAnswerSealer(Buffer.from(secret, 'base64url')).lookupKeyOf(idempotencyKey)
}

const WRITES = { WRITES_ENABLED: 'true' }

async function writeGateway(t: Parameters<typeof startGateway>[0], options: Parameters<typeof startGateway>[1] = {}) {
  const gw = await startGateway(t, { ...options, env: { ...WRITES, ...options.env } })
  const key = await gw.key()
  const studioId = await gw.studio('acct_test')
  const post = (action: 'go-live' | 'go-offline', idempotencyKey?: string, payload?: object, secret = key.secret) =>
    gw.app.inject({
      method: 'POST',
      url: `/v1/studios/${studioId}/stream/${action}`,
      headers: { ...bearer(secret), ...(idempotencyKey === undefined ? {} : { 'idempotency-key': idempotencyKey }) },
      ...(payload ? { payload } : {}),
    })
  const stream = async () =>
    (await gw.app.inject({ url: `/v1/studios/${studioId}/stream`, headers: bearer(key.secret) })).json()
  const sessions = async () =>
    (await gw.app.inject({ url: `/v1/studios/${studioId}/sessions`, headers: bearer(key.secret) })).json().data
  return { gw, key, studioId, post, stream, sessions }
}

t.test('a retry with the same Idempotency-Key replays the first answer', async (t) => {
  const { post, sessions } = await writeGateway(t)
  const first = await post('go-live', 'retry-1', { title: 'Launch' })
  t.equal(first.statusCode, 200)
  t.notOk(first.headers['idempotent-replayed'], 'the first answer is not a replay')
  const retry = await post('go-live', 'retry-1', { title: 'Launch' })
  t.equal(retry.statusCode, 200)
  t.equal(retry.headers['idempotent-replayed'], 'true')
  t.equal(retry.body, first.body, 'the same body, byte for byte')
  t.not(retry.headers['x-request-id'], first.headers['x-request-id'], 'each attempt has its own request id')
  await post('go-offline')
  t.equal((await sessions()).length, 1, 'one session for the write and its retry')
})

t.test('a go-live retried after a go-offline replays and starts no second session', async (t) => {
  const { post, stream, sessions } = await writeGateway(t)
  const live = await post('go-live', 'live-a')
  t.equal((await post('go-offline', 'offline-a')).statusCode, 200)
  const retried = await post('go-live', 'live-a')
  t.equal(retried.headers['idempotent-replayed'], 'true')
  t.same(retried.json(), live.json(), 'the answer of the first go-live')
  t.equal((await stream()).status, 'offline', 'the retry did not go live again')
  t.equal((await sessions()).length, 1, 'exactly one session')
  const offlineAgain = await post('go-offline', 'offline-a')
  t.equal(offlineAgain.headers['idempotent-replayed'], 'true', 'go-offline replays too')
})

t.test('the same key for a different request is 400 invalid_request naming the header', async (t) => {
  const { gw, key, post } = await writeGateway(t)
  t.equal((await post('go-live', 'used', { title: 'One' })).statusCode, 200)
  const otherStudio = await gw.studio('acct_test')
  const cases = [
    ['another body', () => post('go-live', 'used', { title: 'Two' })],
    ['another route', () => post('go-offline', 'used')],
    [
      'another studio',
      () =>
        gw.app.inject({
          method: 'POST',
          url: `/v1/studios/${otherStudio}/stream/go-live`,
          headers: { ...bearer(key.secret), 'idempotency-key': 'used' },
          payload: { title: 'One' },
        }),
    ],
  ] as const
  for (const [name, send] of cases) {
    const res = await send()
    t.equal(res.statusCode, 400, name)
    const error = errorOf(t, res)
    t.equal(error.code, 'invalid_request')
    t.match(error.message, /Idempotency-Key/)
  }
  t.equal((await post('go-live', 'used', {})).statusCode, 400, '{} is not the body that was sent')
})

t.test('no body, an empty body and {} are one request', async (t) => {
  const { gw, studioId, key, post } = await writeGateway(t)
  t.equal((await post('go-offline', 'none')).statusCode, 200)
  const empty = await gw.app.inject({
    method: 'POST',
    url: `/v1/studios/${studioId}/stream/go-offline`,
    headers: { ...bearer(key.secret), 'idempotency-key': 'none', 'content-type': 'application/json' },
    payload: '',
  })
  t.equal(empty.headers['idempotent-replayed'], 'true')
  t.equal((await post('go-offline', 'none', {})).headers['idempotent-replayed'], 'true')
})

t.test('a malformed Idempotency-Key is 400 invalid_request', async (t) => {
  const { post, stream } = await writeGateway(t)
  for (const [name, value] of [
    ['empty', ''],
    ['256 characters', 'k'.repeat(256)],
    ['a space', 'two words'],
    ['non-ASCII', 'clé'],
    ['a control character', 'a\tb'],
  ] as const) {
    const res = await post('go-live', value)
    t.equal(res.statusCode, 400, name)
    const error = errorOf(t, res)
    t.equal(error.code, 'invalid_request')
    t.match(error.message, /idempotency-key/i, 'the message names the header')
  }
  t.equal((await post('go-live', '!'.repeat(255))).statusCode, 200, '255 visible characters are accepted')
  t.equal((await stream()).status, 'live')
})

t.test('records are per API key', async (t) => {
  const { gw, post } = await writeGateway(t)
  const other = await gw.key()
  t.equal((await post('go-live', 'shared', { title: 'A' })).statusCode, 200)
  const res = await post('go-live', 'shared', { title: 'B' }, other.secret)
  t.equal(res.statusCode, 200, 'another key may use the same value for another request')
  t.notOk(res.headers['idempotent-replayed'])
})

t.test('two concurrent requests with one key run the write once', async (t) => {
  let calls = 0
  let release: () => void = () => {}
  const gate = new Promise<void>((resolve) => {
    release = resolve
  })
  const slowGoLive = (studios: StudioService): StudioService => ({
    ...studios,
    async goLive(ctx, studioId, input) {
      calls++
      await gate
      return studios.goLive(ctx, studioId, input)
    },
  })
  const { post, sessions } = await writeGateway(t, { studios: (store) => slowGoLive(store.studios) })
  const first = post('go-live', 'once')
  const second = post('go-live', 'once')
  // Both are in flight; the write is held until each had the chance to claim the key.
  setTimeout(release, 200)
  const answers = await Promise.all([first, second])
  t.same(
    answers.map((a) => a.statusCode),
    [200, 200],
  )
  t.equal(calls, 1, 'the write ran once')
  t.equal(answers.filter((a) => a.headers['idempotent-replayed'] === 'true').length, 1, 'the other is a replay')
  t.equal(answers[0]?.body, answers[1]?.body)
  await post('go-offline')
  t.equal((await sessions()).length, 1)
})

t.test('a 404 is stored and replayed with the retry’s own request id', async (t) => {
  const { gw, key } = await writeGateway(t)
  const send = () =>
    gw.app.inject({
      method: 'POST',
      url: '/v1/studios/std_missing/stream/go-live',
      headers: { ...bearer(key.secret), 'idempotency-key': 'missing' },
    })
  const first = await send()
  t.equal(first.statusCode, 404)
  const retry = await send()
  t.equal(retry.statusCode, 404)
  t.equal(retry.headers['idempotent-replayed'], 'true')
  t.equal(errorOf(t, retry).code, 'not_found')
  t.equal(errorOf(t, retry).message, errorOf(t, first).message)
})

t.test('a 5xx is not stored: the retry runs the write', async (t) => {
  let failures = 1
  const flaky = (studios: StudioService): StudioService => ({
    ...studios,
    async goLive(ctx, studioId, input) {
      if (failures-- > 0) throw unavailable('the database is temporarily unavailable; retry shortly')
      return studios.goLive(ctx, studioId, input)
    },
  })
  const { post, stream } = await writeGateway(t, { studios: (store) => flaky(store.studios) })
  const first = await post('go-live', 'flaky')
  t.equal(first.statusCode, 503)
  t.equal(errorOf(t, first).code, 'unavailable')
  const retry = await post('go-live', 'flaky')
  t.equal(retry.statusCode, 200)
  t.notOk(retry.headers['idempotent-replayed'], 'run, not replayed')
  t.equal((await stream()).status, 'live')
})

t.test('requests refused before the write do not use up the key', async (t) => {
  const { post, stream } = await writeGateway(t)
  const invalid = await post('go-live', 'later', { colour: 'red' })
  t.equal(invalid.statusCode, 400)
  const valid = await post('go-live', 'later', { title: 'Now' })
  t.equal(valid.statusCode, 200, 'the key is free for the corrected request')
  t.equal((await stream()).title, 'Now')

  const gated = await startGateway(t)
  const { secret, id } = await gated.key()
  const studioId = await gated.studio('acct_test')
  const res = await gated.app.inject({
    method: 'POST',
    url: `/v1/studios/${studioId}/stream/go-live`,
    headers: { ...bearer(secret), 'idempotency-key': 'gated' },
  })
  t.equal(res.statusCode, 503)
  t.equal(errorOf(t, res).code, 'write_disabled')
  t.equal(
    await gated.store.idempotency.find(id, await storedAs(gated, 'gated')),
    undefined,
    'a gated write claims nothing',
  )
})

t.test('expired records are ignored and pruned; abandoned claims are taken over', async (t) => {
  const { gw, key, post } = await writeGateway(t)
  const dayAgo = new Date(Date.now() - 25 * 60 * 60 * 1000).toISOString()
  const hourAgo = new Date(Date.now() - 60 * 60 * 1000).toISOString()
  await gw.store.idempotency.claim(key.id, await storedAs(gw, 'old'), 'another request', dayAgo)
  await gw.store.idempotency.complete(key.id, await storedAs(gw, 'old'), dayAgo, 200, '{}')
  await gw.store.idempotency.claim(key.id, await storedAs(gw, 'abandoned'), 'any', hourAgo)
  await gw.store.idempotency.claim('key_other', await storedAs(gw, 'stale'), 'any', dayAgo)

  const expired = await post('go-live', 'old')
  t.equal(expired.statusCode, 200, 'a record over 24 h old is as if absent')
  t.notOk(expired.headers['idempotent-replayed'])
  const abandoned = await post('go-offline', 'abandoned')
  t.equal(abandoned.statusCode, 200, 'a claim never answered is taken over after its lease')
  t.notOk(abandoned.headers['idempotent-replayed'])

  let pruned = false
  for (let i = 0; i < 100 && !pruned; i++) {
    pruned = (await gw.store.idempotency.find('key_other', await storedAs(gw, 'stale'))) === undefined
    if (!pruned) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.ok(pruned, 'expired records of any key are deleted')
  t.match(
    await gw.store.idempotency.find(key.id, await storedAs(gw, 'old')),
    { statusCode: 200 },
    'the new record replaced the old',
  )
})

t.test('a retry waits for a first request still running, then 503 unavailable', async (t) => {
  const { gw, key, post } = await writeGateway(t, { env: { UPSTREAM_TIMEOUT: '100ms' } })
  await gw.store.idempotency.claim(key.id, await storedAs(gw, 'running'), 'another', new Date().toISOString())
  const res = await post('go-live', 'running')
  t.equal(res.statusCode, 400, 'a running request with another fingerprint: refused at once')
  const { fingerprintOf } = await import('../lib/idempotency.js')
  const fingerprint = fingerprintOf('POST', '/v1/studios/:studioId/stream/go-live', { studioId: 'std_x' }, null)
  await gw.store.idempotency.claim(key.id, await storedAs(gw, 'running-same'), fingerprint, new Date().toISOString())
  const waited = await gw.app.inject({
    method: 'POST',
    url: '/v1/studios/std_x/stream/go-live',
    headers: { ...bearer(key.secret), 'idempotency-key': 'running-same' },
  })
  t.equal(waited.statusCode, 503)
  const error = errorOf(t, waited)
  t.equal(error.code, 'unavailable')
  t.match(error.message, /still in progress/)
  t.equal(waited.headers['retry-after'], '1')
})
