import type { InjectOptions } from 'fastify'
import type { Test } from 'tap'
import t from 'tap'
import { bearer, errorOf, startGateway } from './helpers/gateway.js'

t.test('request validation: every failure is 400 invalid_request naming the field', async (t) => {
  const gw = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
  const { secret } = await gw.key()
  const studioId = await gw.studio('acct_test')
  const goLive = `/v1/studios/${studioId}/stream/go-live`
  const goOffline = `/v1/studios/${studioId}/stream/go-offline`
  const json = { ...bearer(secret), 'content-type': 'application/json' }

  const expect400 = async (t: Test, request: InjectOptions, message: RegExp) => {
    const res = await gw.app.inject(request)
    t.equal(res.statusCode, 400, `status of ${JSON.stringify(message.source)}`)
    const error = errorOf(t, res)
    t.equal(error.code, 'invalid_request')
    t.match(error.message, message)
    t.same(Object.keys(res.json()), ['error'], 'only the envelope, never a Fastify default body')
  }

  t.test('limit that is not a number', (t) =>
    expect400(
      t,
      { url: '/v1/studios?limit=abc', headers: bearer(secret) },
      /querystring parameter "limit" must be integer/,
    ),
  )
  t.test('limit 0', (t) =>
    expect400(t, { url: '/v1/studios?limit=0', headers: bearer(secret) }, /"limit" must be >= 1/),
  )
  t.test('limit 101', (t) =>
    expect400(t, { url: '/v1/studios?limit=101', headers: bearer(secret) }, /"limit" must be <= 100/),
  )
  t.test('limit 1.5', (t) => expect400(t, { url: '/v1/studios?limit=1.5', headers: bearer(secret) }, /"limit"/))
  t.test('limit given twice', (t) =>
    expect400(t, { url: '/v1/studios?limit=5&limit=6', headers: bearer(secret) }, /"limit"/),
  )
  t.test('limit written as anything but decimal digits: not an integer, whatever Number() makes of it', async (t) => {
    for (const text of ['0x10', '0b11', '1e1', '%2B5', '10.0', '5%20', '%205', '%20', 'Infinity', '1_0']) {
      await expect400(
        t,
        { url: `/v1/studios?limit=${text}`, headers: bearer(secret) },
        /querystring parameter "limit" must be integer/,
      )
    }
    await expect400(t, { url: '/v1/keys?limit=0x10', headers: bearer(secret) }, /"limit" must be integer/)
    const zeroPadded = await gw.app.inject({ url: '/v1/studios?limit=05', headers: bearer(secret) })
    t.equal(zeroPadded.statusCode, 200, 'decimal digits with a leading zero are an integer')
    await expect400(t, { url: '/v1/studios?limit=-1', headers: bearer(secret) }, /"limit" must be >= 1/)
  })
  t.test('limit on the sessions list', (t) =>
    expect400(t, { url: `/v1/studios/${studioId}/sessions?limit=abc`, headers: bearer(secret) }, /"limit"/),
  )
  t.test('an unknown query parameter', (t) =>
    expect400(t, { url: '/v1/studios?foo=1', headers: bearer(secret) }, /unknown querystring parameter "foo"/),
  )
  t.test('an unknown query parameter on a route without a query schema', (t) =>
    expect400(
      t,
      { url: `/v1/studios/${studioId}?expand=all`, headers: bearer(secret) },
      /unknown querystring parameter "expand"/,
    ),
  )
  t.test('an empty cursor', (t) => expect400(t, { url: '/v1/studios?cursor=', headers: bearer(secret) }, /"cursor"/))
  t.test('a made-up cursor', (t) =>
    expect400(t, { url: '/v1/studios?cursor=abc.def', headers: bearer(secret) }, /"cursor" is not valid for this list/),
  )

  t.test('a body that is not JSON', (t) =>
    expect400(t, { method: 'POST', url: goLive, headers: json, payload: '{"title":' }, /body is not valid JSON/),
  )
  t.test('a body of another content type', (t) =>
    expect400(
      t,
      { method: 'POST', url: goLive, headers: { ...bearer(secret), 'content-type': 'text/plain' }, payload: 'hello' },
      /Content-Type must be application\/json/,
    ),
  )
  t.test('a body without a content type', (t) =>
    expect400(
      t,
      { method: 'POST', url: goLive, headers: { ...bearer(secret), 'content-type': '' }, payload: '{"title":"x"}' },
      /Content-Type must be application\/json/,
    ),
  )
  t.test('a body over 64 KiB', (t) =>
    expect400(
      t,
      { method: 'POST', url: goLive, headers: json, payload: JSON.stringify({ title: 'x'.repeat(70_000) }) },
      /larger than the 65536-byte limit/,
    ),
  )
  t.test('an unknown body field', (t) =>
    expect400(
      t,
      { method: 'POST', url: goLive, headers: json, payload: { title: 'x', private: true } },
      /body has an unknown field "private"/,
    ),
  )
  t.test('a __proto__ key', (t) =>
    expect400(
      t,
      { method: 'POST', url: goLive, headers: json, payload: '{"title":"x","__proto__":{"isAdmin":true}}' },
      /__proto__/,
    ),
  )
  t.test('a constructor.prototype key', (t) =>
    expect400(
      t,
      { method: 'POST', url: goLive, headers: json, payload: '{"constructor":{"prototype":{"isAdmin":true}}}' },
      /constructor\.prototype/,
    ),
  )
  t.test('a title of the wrong type is not coerced', (t) =>
    expect400(t, { method: 'POST', url: goLive, headers: json, payload: { title: 42 } }, /body "title" must be string/),
  )
  t.test('an empty title', (t) =>
    expect400(
      t,
      { method: 'POST', url: goLive, headers: json, payload: { title: '' } },
      /body "title" must NOT have fewer than 1 characters/,
    ),
  )
  t.test('a title over 140 characters', (t) =>
    expect400(t, { method: 'POST', url: goLive, headers: json, payload: { title: 'x'.repeat(141) } }, /"title"/),
  )
  t.test('a title holding NUL (no store can keep it)', (t) =>
    expect400(t, { method: 'POST', url: goLive, headers: json, payload: '{"title":"a\\u0000b"}' }, /body "title"/),
  )
  t.test('a body that is an array', (t) =>
    expect400(t, { method: 'POST', url: goLive, headers: json, payload: '[]' }, /body must be a JSON object/),
  )
  t.test('a body that is a string', (t) =>
    expect400(t, { method: 'POST', url: goLive, headers: json, payload: '"live"' }, /body must be a JSON object/),
  )
  t.test('a go-offline body with a field', (t) =>
    expect400(t, { method: 'POST', url: goOffline, headers: json, payload: { now: true } }, /unknown field "now"/),
  )
  t.test('a field name with control characters is escaped in the message', async (t) => {
    const res = await gw.app.inject({ method: 'POST', url: goLive, headers: json, payload: '{"a\\n\\u001b[31mb":1}' })
    t.equal(res.statusCode, 400)
    const { message } = errorOf(t, res)
    t.notMatch(message, /\n/)
    t.notOk(message.includes('\u001b'), 'no raw escape character')
    t.match(message, /unknown field "a\\n\\u001b\[31mb"/)
  })
  t.test('a key pasted as a field name is not echoed', async (t) => {
    const res = await gw.app.inject({
      method: 'POST',
      url: goLive,
      headers: json,
      payload: JSON.stringify({ [secret]: 1 }),
    })
    t.equal(res.statusCode, 400)
    t.notOk(res.body.includes(secret))
  })

  t.test('accepted bodies', async (t) => {
    for (const [label, request] of [
      ['an empty JSON body on go-offline', { method: 'POST', url: goOffline, headers: json, payload: '' }],
      ['no body and no content type on go-offline', { method: 'POST', url: goOffline, headers: bearer(secret) }],
      ['{} on go-offline', { method: 'POST', url: goOffline, headers: json, payload: '{}' }],
      ['no body on go-live', { method: 'POST', url: goLive, headers: bearer(secret) }],
      ['null on go-live', { method: 'POST', url: goLive, headers: json, payload: 'null' }],
      [
        'a JSON content type with a charset',
        {
          method: 'POST',
          url: goLive,
          headers: { ...bearer(secret), 'content-type': 'application/json; charset=utf-8' },
          payload: '{"title":"hello"}',
        },
      ],
    ] as Array<[string, InjectOptions]>) {
      const res = await gw.app.inject(request)
      t.equal(res.statusCode, 200, label)
    }
  })
})
