import t from 'tap'
import { errorCatalog } from '../lib/errors.js'
import { bearer, errorOf, startGateway } from './helpers/gateway.js'
import { listenLocally, rawRequest } from './helpers/raw-http.js'

t.test('unknown paths and methods are 404 not_found in the envelope, with or without a key', async (t) => {
  const gw = await startGateway(t)
  const { secret } = await gw.key()
  for (const [method, url] of [
    ['GET', '/'],
    ['GET', '/v1'],
    ['GET', '/v1/'],
    ['GET', '/v1/nope'],
    ['GET', '/v2/studios'],
    ['DELETE', '/v1/studios'],
    ['PUT', '/v1/key'],
    ['GET', '/v1/studios/std_x/stream/go-live'],
    ['PATCH', '/v1/studios/std_x'],
  ] as const) {
    for (const headers of [{}, bearer(secret)]) {
      const res = await gw.app.inject({ method, url, headers })
      t.equal(res.statusCode, 404, `${method} ${url}`)
      t.equal(errorOf(t, res).code, 'not_found')
      t.match(res.headers['content-type'], /^application\/json/)
    }
  }
})

t.test('an unexpected failure is 500 internal: generic message, stack only in the log', async (t) => {
  const gw = await startGateway(t, {
    studios: (store) => ({
      ...store.studios,
      getStudio: async () => {
        throw new Error('database file is corrupt at page 42')
      },
    }),
  })
  const { secret } = await gw.key()
  const res = await gw.app.inject({
    url: '/v1/studios/std_any',
    headers: { ...bearer(secret), 'x-request-id': 'trace-500' },
  })
  t.equal(res.statusCode, 500)
  const error = errorOf(t, res)
  t.equal(error.code, 'internal')
  t.notMatch(res.body, /corrupt|page 42|Error:|at /, 'nothing internal in the answer')
  const logged = gw.logs.find((line) => line.level === 50)
  t.equal(logged?.requestId, 'trace-500', 'the error is logged with the request id')
  t.match((logged?.err as { stack?: string } | undefined)?.stack, /database file is corrupt/)
})

t.test('a path that is not valid percent-encoding is 400 invalid_request', async (t) => {
  const gw = await startGateway(t)
  const res = await gw.app.inject({ url: '/v1/studios/%zz' })
  t.equal(res.statusCode, 400)
  t.equal(errorOf(t, res).code, 'invalid_request')
  t.match(res.headers['x-request-id'], /^req_[0-9a-f]{16}$/)
})

t.test('every status code of the catalog matches the spec table', async (t) => {
  t.same(Object.fromEntries(Object.entries(errorCatalog).map(([code, { status }]) => [code, status])), {
    invalid_request: 400,
    invalid_key: 401,
    insufficient_scope: 403,
    not_found: 404,
    rate_limited: 429,
    write_disabled: 503,
    unavailable: 503,
    bad_gateway: 502,
    internal: 500,
  })
})

t.test('requests the HTTP parser rejects still get the envelope with a generated request id', async (t) => {
  const gw = await startGateway(t)
  const port = await listenLocally(gw)
  const cases = {
    'a control byte in a header value': 'GET /v1/key HTTP/1.1\r\nHost: x\r\nX-Api-Key: a\x01b\r\n\r\n',
    'a broken request line': 'GARBAGE\r\n\r\n',
    'headers over the size limit': `GET /v1/key HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    'a space in a header name': 'GET /v1/key HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n',
  }
  for (const [label, bytes] of Object.entries(cases)) {
    const answer = await rawRequest(port, bytes)
    t.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/, label)
    const [head, body] = answer.split('\r\n\r\n') as [string, string]
    const id = /\r\nX-Request-Id: (req_[0-9a-f]{16})\r\n/i.exec(head)?.[1]
    t.ok(id, `${label}: a generated X-Request-Id`)
    t.match(head, /\r\nX-Content-Type-Options: nosniff\r\n/i, `${label}: nosniff`)
    t.match(head, /\r\nCache-Control: no-store\r\n/i, `${label}: no-store`)
    const parsed = JSON.parse(body)
    t.equal(parsed.error.code, 'invalid_request', label)
    t.equal(parsed.error.requestId, id, `${label}: requestId equals the header`)
  }
})
