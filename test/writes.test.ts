import t from 'tap'
import { bearer, errorOf, startGateway } from './helpers/gateway.js'

t.test('writes are gated off by default: 503 write_disabled after auth, scope and validation', async (t) => {
  const gw = await startGateway(t)
  const { secret } = await gw.key()
  const readOnly = await gw.key({ scopes: ['stream:read'] })
  const studioId = await gw.studio('acct_test')
  for (const action of ['go-live', 'go-offline']) {
    const url = `/v1/studios/${studioId}/stream/${action}`
    const res = await gw.app.inject({ method: 'POST', url, headers: bearer(secret) })
    t.equal(res.statusCode, 503, action)
    const error = errorOf(t, res)
    t.equal(error.code, 'write_disabled')
    t.notOk(res.headers['retry-after'], 'not transient: no Retry-After')

    t.equal((await gw.app.inject({ method: 'POST', url })).statusCode, 401, 'no key: 401 first')
    t.equal(
      (await gw.app.inject({ method: 'POST', url, headers: bearer(readOnly.secret) })).statusCode,
      403,
      'scope before the gate',
    )
    const invalid = await gw.app.inject({
      method: 'POST',
      url,
      headers: { ...bearer(secret), 'content-type': 'application/json' },
      payload: '{"x":1}',
    })
    t.equal(invalid.statusCode, 400, 'validation before the gate')
  }
  const stream = (await gw.app.inject({ url: `/v1/studios/${studioId}/stream`, headers: bearer(secret) })).json()
  t.equal(stream.status, 'offline', 'nothing was written')
  const missing = await gw.app.inject({
    method: 'POST',
    url: '/v1/studios/std_nope/stream/go-live',
    headers: bearer(secret),
  })
  t.equal(missing.statusCode, 503, 'the gate answers before the handler looks the studio up')
})

t.test('with WRITES_ENABLED: go-live and go-offline are idempotent transitions', async (t) => {
  const gw = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
  const { secret } = await gw.key()
  const studioId = await gw.studio('acct_test')
  const post = (action: string, payload?: object) =>
    gw.app.inject({
      method: 'POST',
      url: `/v1/studios/${studioId}/stream/${action}`,
      headers: bearer(secret),
      ...(payload ? { payload } : {}),
    })
  const sessions = async () =>
    (await gw.app.inject({ url: `/v1/studios/${studioId}/sessions`, headers: bearer(secret) })).json().data

  const live = await post('go-live', { title: 'Launch day' })
  t.equal(live.statusCode, 200)
  const stream = live.json()
  t.match(stream, { studioId, status: 'live', title: 'Launch day', startedAt: String, updatedAt: String })
  t.equal(stream.startedAt, stream.updatedAt)

  const again = await post('go-live', { title: 'Another title' })
  t.equal(again.statusCode, 200)
  t.same(again.json(), stream, 'going live while live returns the unchanged stream')
  t.same(await sessions(), [], 'the live session is not listed until it ends')

  const offline = await post('go-offline')
  t.equal(offline.statusCode, 200)
  t.match(offline.json(), { studioId, status: 'offline', title: null, startedAt: null })
  const offlineAgain = await post('go-offline')
  t.same(offlineAgain.json(), offline.json(), 'going offline while offline returns the unchanged stream')

  const [session, ...rest] = await sessions()
  t.same(rest, [], 'exactly one session for one go-live, however often repeated')
  t.match(session, {
    id: /^ses_/,
    studioId,
    title: 'Launch day',
    startedAt: stream.startedAt,
    endedAt: offline.json().updatedAt,
  })

  t.equal((await post('go-live')).json().title, null, 'a go-live without a body has no title')
  await post('go-offline')
  t.equal((await sessions()).length, 2)
})

t.test('concurrent go-lives open exactly one session', async (t) => {
  const gw = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
  const { secret } = await gw.key()
  const studioId = await gw.studio('acct_test')
  const url = `/v1/studios/${studioId}/stream`
  const answers = await Promise.all(
    Array.from({ length: 10 }, () => gw.app.inject({ method: 'POST', url: `${url}/go-live`, headers: bearer(secret) })),
  )
  t.same(
    answers.map((a) => a.statusCode),
    Array(10).fill(200),
  )
  t.equal(new Set(answers.map((a) => a.json().startedAt)).size, 1, 'every answer shows the same broadcast')
  await gw.app.inject({ method: 'POST', url: `${url}/go-offline`, headers: bearer(secret) })
  const list = (await gw.app.inject({ url: `/v1/studios/${studioId}/sessions`, headers: bearer(secret) })).json()
  t.equal(list.data.length, 1)
})
