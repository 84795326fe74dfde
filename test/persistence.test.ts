import t from 'tap'
import { bearer, startGateway } from './helpers/gateway.js'

t.test('the store survives a restart (SQLite file, or PostgreSQL schema)', async (t) => {
  const first = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
  const { secret } = await first.key()
  const studioId = await first.studio('acct_test', 'Persistent')
  await first.app.inject({
    method: 'POST',
    url: `/v1/studios/${studioId}/stream/go-live`,
    headers: bearer(secret),
    payload: { title: 'kept' },
  })
  const firstPage = (await first.app.inject({ url: '/v1/studios?limit=1', headers: bearer(secret) })).json()
  await first.close()

  const second = await startGateway(t, { storeEnv: first.storeEnv, env: { WRITES_ENABLED: 'true' } })
  const studio = await second.app.inject({ url: `/v1/studios/${studioId}`, headers: bearer(secret) })
  t.equal(studio.statusCode, 200, 'the key and the studio are still there')
  t.equal(studio.json().name, 'Persistent')
  const stream = (await second.app.inject({ url: `/v1/studios/${studioId}/stream`, headers: bearer(secret) })).json()
  t.match(stream, { status: 'live', title: 'kept' }, 'the live stream is still live')
  t.same(
    (await second.app.inject({ url: '/v1/studios?limit=1', headers: bearer(secret) })).json(),
    firstPage,
    'cursors stay valid across a restart: the signing secret is stored',
  )
})
