import t from 'tap'
import { bearer, errorOf, startGateway } from './helpers/gateway.js'

const GENERATED = /^req_[0-9a-f]{16}$/

t.test('X-Request-Id', async (t) => {
  const gw = await startGateway(t)
  const { secret } = await gw.key()

  t.test('is generated as req_ + 16 hex on a success', async (t) => {
    const res = await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })
    t.equal(res.statusCode, 200)
    t.match(res.headers['x-request-id'], GENERATED)
  })

  t.test('is generated on an error, and the body requestId equals the header', async (t) => {
    const res = await gw.app.inject({ url: '/v1/key' })
    t.equal(res.statusCode, 401)
    t.match(res.headers['x-request-id'], GENERATED)
    errorOf(t, res)
  })

  t.test('is generated on an unknown route', async (t) => {
    const res = await gw.app.inject({ url: '/nowhere' })
    t.equal(res.statusCode, 404)
    t.match(res.headers['x-request-id'], GENERATED)
    errorOf(t, res)
  })

  t.test('a valid client id is echoed, on success and on error', async (t) => {
    const id = 'client.trace-42:ABC_z'
    const ok = await gw.app.inject({ url: '/v1/key', headers: { ...bearer(secret), 'x-request-id': id } })
    t.equal(ok.headers['x-request-id'], id)
    const failed = await gw.app.inject({
      url: '/v1/studios/std_missing',
      headers: { ...bearer(secret), 'x-request-id': id },
    })
    t.equal(failed.statusCode, 404)
    t.equal(errorOf(t, failed).requestId, id)
  })

  t.test('128 characters are echoed; 129 are replaced', async (t) => {
    const max = 'a'.repeat(128)
    const echoed = await gw.app.inject({ url: '/v1/key', headers: { 'x-request-id': max } })
    t.equal(echoed.headers['x-request-id'], max)
    const long = await gw.app.inject({ url: '/v1/key', headers: { 'x-request-id': `${max}a` } })
    t.match(long.headers['x-request-id'], GENERATED)
  })

  for (const [label, value] of [
    ['empty', ''],
    ['a space', 'abc def'],
    ['a slash', 'abc/def'],
    ['non-ASCII', 'réq-1'],
    ['a comma (two ids joined)', 'a,b'],
    ['an HTML tag', '<script>'],
    ['an API key in it', 'sk_live_abcdefghijklmnopqrstuvwxyz0123456789ABCDEF'],
  ] as const) {
    t.test(`an id with ${label} is replaced by a generated one`, async (t) => {
      const res = await gw.app.inject({ url: '/v1/key', headers: { ...bearer(secret), 'x-request-id': value } })
      t.equal(res.statusCode, 200)
      t.match(res.headers['x-request-id'], GENERATED)
    })
  }

  t.test('two X-Request-Id headers are not echoed', async (t) => {
    const res = await gw.app.inject({ url: '/v1/key', headers: { ...bearer(secret), 'x-request-id': ['one', 'two'] } })
    t.match(res.headers['x-request-id'], GENERATED)
  })

  t.test('every log line of a request carries its id', async (t) => {
    const id = 'trace-for-logs'
    await gw.app.inject({ url: '/v1/studios', headers: { ...bearer(secret), 'x-request-id': id } })
    const lines = gw.logs.filter((line) => line.requestId === id)
    t.equal(lines.length, 1, 'one access-log line')
    t.equal(lines[0]?.msg, 'request completed')
  })
})
