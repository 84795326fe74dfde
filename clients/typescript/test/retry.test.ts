import t from 'tap'
import { StudioGatewayClient } from '../src/index.js'
import { sequence } from './helpers/fake-clock.js'
import { failure, harness, TEST_KEY } from './helpers/harness.js'
import { deadPort, envelope, json, scriptedServer } from './helpers/scripted-server.js'

/**
 * The retry policy against a scripted server: exact sequences of answers, attempts counted from
 * what the server received, delays read from the fake clock (no test sleeps for real).
 */

const key = { id: 'key_1', prefix: 'sk_live_0123', accountId: 'acct_1', scopes: ['studio:read'], expiresAt: null }
const stream = {
  studioId: 'std_1',
  status: 'live',
  title: 'Launch',
  startedAt: null,
  updatedAt: '2030-01-01T00:00:00.000Z',
}
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

t.test('503 unavailable twice then 200: three attempts, backoff between them', async (t) => {
  const server = await scriptedServer(t, [envelope(503, 'unavailable'), envelope(503, 'unavailable'), json(key)])
  const h = harness(server.url)
  t.same(await h.client.getKey(), key)
  t.equal(server.received.length, 3)
  t.same(h.delays(), [125, 250], 'full jitter at 0.5 of 250 ms, then of 500 ms')
  t.same(
    h.events.map((event) => event.type),
    ['attempt', 'retry', 'attempt', 'retry', 'attempt', 'success'],
  )
  t.match(h.events.at(-1), { type: 'success', attempts: 3, status: 200 })
})

t.test('429 with Retry-After: 2 waits exactly 2 s, then succeeds', async (t) => {
  const server = await scriptedServer(t, [
    envelope(429, 'rate_limited', { headers: { 'retry-after': '2' } }),
    json({ data: [], nextCursor: null }),
  ])
  const h = harness(server.url, { autoAdvance: false })
  const call = h.client.listStudios()
  const retry = await h.next('retry')
  t.equal(retry.delayMs, 2000)
  t.equal(retry.error.retryAfter, 2)
  const start = h.clock.now()
  h.clock.advance(1999)
  t.same(h.clock.pending(), [2000], 'still waiting after 1.999 s')
  t.equal(server.received.length, 1)
  h.clock.advance(1)
  t.same(await call, { data: [], nextCursor: null })
  t.equal(server.received.length, 2, 'the second attempt went out once 2 s had passed')
  t.equal(h.clock.now() - start, 2000)
})

t.test('a 4xx is never retried: one attempt, the envelope surfaced', async (t) => {
  const cases = [
    { status: 400, code: 'invalid_request' },
    { status: 401, code: 'invalid_key' },
    { status: 403, code: 'insufficient_scope', requiredScope: 'stream:golive' },
    { status: 404, code: 'not_found' },
  ]
  for (const { status, code, requiredScope } of cases) {
    const server = await scriptedServer(t, [envelope(status, code, { requiredScope, requestId: `req_${status}` })])
    const h = harness(server.url)
    const error = await failure(t, h.client.goLive('std_1'))
    t.match(error, { name: 'StudioGatewayError', status, code, attempts: 1, requestId: `req_${status}` }, code)
    t.equal(error.message, `scripted ${code}`)
    t.equal(error.requiredScope, requiredScope)
    t.equal(error.transient, false)
    t.same(JSON.parse(JSON.stringify(error)), {
      name: 'StudioGatewayError',
      operation: 'goLive',
      code,
      status,
      message: `scripted ${code}`,
      requestId: `req_${status}`,
      ...(requiredScope === undefined ? {} : { requiredScope }),
      attempts: 1,
    })
    t.equal(server.received.length, 1, `${code}: one attempt`)
    t.match(h.events.at(-1), { type: 'give-up', reason: 'not_retryable', attempts: 1 })
  }
})

t.test('503 write_disabled is never retried, even with an Idempotency-Key', async (t) => {
  const server = await scriptedServer(t, [envelope(503, 'write_disabled')])
  const h = harness(server.url)
  const error = await failure(t, h.client.goOffline('std_1'))
  t.match(error, { status: 503, code: 'write_disabled', attempts: 1, retryAfter: undefined })
  t.match(server.received[0]?.headers['idempotency-key'], UUID)
  t.equal(server.received.length, 1)
})

t.test('502 bad_gateway and 500 internal: retried until the attempts run out', async (t) => {
  for (const [status, code] of [
    [502, 'bad_gateway'],
    [500, 'internal'],
  ] as const) {
    const server = await scriptedServer(t, [envelope(status, code), envelope(status, code), envelope(status, code)])
    const h = harness(server.url)
    const error = await failure(t, h.client.getStudio('std_1'))
    t.match(error, { status, code, attempts: 3, requestId: `req_${code}`, transient: true })
    t.equal(server.received.length, 3)
    t.same(h.delays(), [125, 250])
    t.match(h.events.at(-1), { type: 'give-up', reason: 'attempts_exhausted', attempts: 3 })
  }
})

t.test('an HTML 502 from a proxy is a StudioGatewayError with the non-envelope code', async (t) => {
  const page = { status: 502, headers: { 'content-type': 'text/html' }, body: '<html><h1>502 Bad Gateway</h1></html>' }
  const server = await scriptedServer(t, [page, page, page])
  const h = harness(server.url)
  const error = await failure(t, h.client.getStream('std_1'))
  t.match(error, { code: 'unexpected_response', status: 502, attempts: 3, transient: true, requestId: undefined })
  t.match(error.message, /502 \(text\/html\) without the error envelope/)
  t.equal(server.received.length, 3, 'a proxy’s 502 is transient: retried like bad_gateway')
})

t.test('other answers that are not the envelope are not retried', async (t) => {
  const answers = [
    { status: 404, headers: { 'content-type': 'text/html' }, body: '<h1>Not Found</h1>' },
    { status: 400, headers: { 'content-type': 'application/json' }, body: '{"message":"bad"}' },
    { status: 200, headers: { 'content-type': 'text/plain' }, body: 'OK' },
    { status: 200, headers: { 'content-type': 'application/json' }, body: '{"studios":[]}' },
  ]
  for (const answer of answers) {
    const server = await scriptedServer(t, [answer])
    const h = harness(server.url)
    const error = await failure(t, h.client.listStudios())
    t.match(error, { code: 'unexpected_response', status: answer.status, attempts: 1, transient: false }, answer.body)
  }
})

t.test('a code this client does not know is kept as sent and not retried', async (t) => {
  const server = await scriptedServer(t, [envelope(503, 'maintenance', { headers: { 'retry-after': '1' } })])
  const h = harness(server.url)
  const error = await failure(t, h.client.getKey())
  t.match(error, { code: 'maintenance', status: 503, attempts: 1, retryAfter: 1, transient: false })
})

t.test('a redirect is not followed (the key stays with the gateway)', async (t) => {
  const server = await scriptedServer(t, [{ status: 301, headers: { location: 'https://elsewhere.example/v1/key' } }])
  const h = harness(server.url)
  const error = await failure(t, h.client.getKey())
  t.match(error, { code: 'unexpected_response', status: 301, attempts: 1 })
  t.match(error.message, /redirect \(301 to https:\/\/elsewhere\.example\/v1\/key\): check baseUrl/)
})

t.test('connection refused: network_error, retried for a read', async (t) => {
  const h = harness(`http://127.0.0.1:${await deadPort()}`)
  const error = await failure(t, h.client.getKey())
  t.match(error, { code: 'network_error', status: undefined, attempts: 3, transient: true })
  t.match(error.message, /ECONNREFUSED/)
  t.same(h.events.filter((event) => event.type === 'attempt').length, 3)
})

t.test('a connection cut before the answer is retried for a read', async (t) => {
  const server = await scriptedServer(t, ['reset', 'reset', json(key)])
  const h = harness(server.url)
  t.same(await h.client.getKey(), key)
  t.equal(server.received.length, 3)
  t.match(
    h.events.find((event) => event.type === 'retry'),
    { error: { code: 'network_error' } },
  )
})

t.test('abort during a backoff wait cancels the wait', async (t) => {
  const server = await scriptedServer(t, [envelope(503, 'unavailable')])
  const controller = new AbortController()
  const h = harness(server.url, {
    autoAdvance: false,
    onEvent: (event) => {
      if (event.type === 'retry') setImmediate(() => controller.abort(new Error('user navigated away')))
    },
  })
  const error = await failure(t, h.client.getKey({ signal: controller.signal }))
  t.match(error, { code: 'aborted', attempts: 1, status: undefined })
  t.match((error.cause as Error).message, 'user navigated away')
  t.same(h.clock.pending(), [], 'the wait’s timer was cleared')
  t.equal(server.received.length, 1, 'no attempt after the abort')
  t.match(h.events.at(-1), { type: 'give-up', reason: 'aborted', attempts: 1 })
})

t.test('abort during an attempt, and before the first one', async (t) => {
  const server = await scriptedServer(t, ['hang'])
  const h = harness(server.url)
  const controller = new AbortController()
  const call = h.client.getKey({ signal: controller.signal })
  await server.request(1)
  controller.abort()
  t.match(await failure(t, call), { code: 'aborted', attempts: 1 })
  t.same(h.clock.pending(), [], 'the attempt’s timers were cleared')

  const byHook = new AbortController()
  const hooked = harness(server.url, { onEvent: (event) => event.type === 'attempt' && byHook.abort() })
  t.match(await failure(t, hooked.client.getKey({ signal: byHook.signal })), { code: 'aborted', attempts: 1 })

  const error = await failure(t, h.client.getKey({ signal: AbortSignal.abort() }))
  t.match(error, { code: 'aborted', attempts: 0 })
  t.match(error.message, /before its first attempt/)
  t.equal(server.received.length, 1, 'nothing sent for a call aborted before it started')
})

t.test('the per-call timeout ends the call, attempts and waits included', async (t) => {
  const server = await scriptedServer(t, ['hang'])
  const h = harness(server.url)
  const call = h.client.getKey({ timeoutMs: 5000 })
  await server.request(1)
  h.clock.advance(5000)
  const error = await failure(t, call)
  t.match(error, { code: 'timeout', attempts: 1, status: undefined })
  t.match(error.message, /timeoutMs/)
  t.match(h.events.at(-1), { type: 'give-up', reason: 'deadline' })

  // The client's default deadline, with retries off: still a deadline, not exhausted attempts.
  const once = await scriptedServer(t, ['hang'])
  const o = harness(once.url, { timeoutMs: 200, retry: { maxAttempts: 1 } })
  const call2 = o.client.getKey()
  await once.request(1)
  o.clock.advance(200)
  t.match(await failure(t, call2), { code: 'timeout', attempts: 1 })
  t.match(o.events.at(-1), { type: 'give-up', reason: 'deadline' })
})

t.test('a retry that would end past the deadline is not attempted', async (t) => {
  const server = await scriptedServer(t, [envelope(429, 'rate_limited', { headers: { 'retry-after': '2' } })])
  const h = harness(server.url, { timeoutMs: 1500 })
  const error = await failure(t, h.client.getKey())
  t.match(error, { code: 'rate_limited', attempts: 1, retryAfter: 2 })
  t.match(h.events.at(-1), { type: 'give-up', reason: 'deadline' })
})

t.test('an attempt that outlives attemptTimeoutMs is a timeout, retried', async (t) => {
  const server = await scriptedServer(t, ['hang', 'hang', json(key)])
  const h = harness(server.url, { attemptTimeoutMs: 1000 })
  const call = h.client.getKey()
  await server.request(1)
  h.clock.advance(1000)
  await server.request(2)
  h.clock.advance(1000)
  t.same(await call, key)
  const retries = h.events.filter((event) => event.type === 'retry')
  t.match(retries, [{ error: { code: 'timeout', attempts: 1 } }, { error: { code: 'timeout', attempts: 2 } }])
  t.match(retries[0]?.error.message, /attemptTimeoutMs \(1000 ms\)/)
})

t.test('a Retry-After beyond maxRetryAfterMs is surfaced at once, not waited for', async (t) => {
  const server = await scriptedServer(t, [envelope(429, 'rate_limited', { headers: { 'retry-after': '120' } })])
  const h = harness(server.url)
  const error = await failure(t, h.client.getKey())
  t.match(error, { code: 'rate_limited', attempts: 1, retryAfter: 120, status: 429 })
  t.match(h.events.at(-1), { type: 'give-up', reason: 'retry_after_too_long' })
})

t.test('a 503 unavailable with Retry-After waits at least that long', async (t) => {
  const server = await scriptedServer(t, [envelope(503, 'unavailable', { headers: { 'retry-after': '1' } }), json(key)])
  const h = harness(server.url)
  t.same(await h.client.getKey(), key)
  t.same(h.delays(), [1000], 'max(125 ms of backoff, 1 s of Retry-After)')
})

t.test('a 429 without Retry-After (a proxy) backs off instead', async (t) => {
  const server = await scriptedServer(t, [envelope(429, 'rate_limited'), json(key)])
  const h = harness(server.url)
  t.same(await h.client.getKey(), key)
  t.same(h.delays(), [125])
})

t.test('Retry-After as an HTTP date', async (t) => {
  const server = await scriptedServer(t, [
    envelope(429, 'rate_limited', { headers: { 'retry-after': 'Tue, 01 Jan 2030 00:00:03 GMT' } }),
    json(key),
  ])
  const h = harness(server.url)
  t.same(await h.client.getKey(), key)
  t.same(h.delays(), [3000], 'three seconds after the fake clock’s now')
})

t.test('delays follow capped exponential backoff with full jitter', async (t) => {
  const failures = Array.from({ length: 5 }, () => envelope(500, 'internal'))
  const server = await scriptedServer(t, [...failures, json(key)])
  const h = harness(server.url, {
    retry: { maxAttempts: 6, baseDelayMs: 100, maxDelayMs: 1000 },
    random: sequence(0.999, 0.5, 0.25, 0.999, 0.1),
  })
  const start = h.clock.now()
  t.same(await h.client.getKey(), key)
  // Ceilings 100, 200, 400, 800, then 1600 capped at 1000; each delay a uniform draw below its ceiling.
  t.same(h.delays(), [99, 100, 100, 799, 100])
  t.equal(h.clock.now() - start, 99 + 100 + 100 + 799 + 100, 'the client waited exactly those delays')

  const zero = await scriptedServer(t, [envelope(502, 'bad_gateway'), json(key)])
  const z = harness(zero.url, { random: () => 0 })
  await z.client.getKey()
  t.same(z.delays(), [0], 'full jitter may retry at once')
})

t.test('a write without an Idempotency-Key is never retried', async (t) => {
  const server = await scriptedServer(t, [envelope(503, 'unavailable'), 'reset'])
  const h = harness(server.url, { idempotencyKeys: false })
  const error = await failure(t, h.client.goLive('std_1', { title: 'Launch' }))
  t.match(error, { code: 'unavailable', attempts: 1, transient: true })
  t.equal(server.received[0]?.headers['idempotency-key'], undefined, 'no key sent')
  t.match(h.events.at(-1), { type: 'give-up', reason: 'write_without_idempotency_key' })

  const cut = await failure(t, h.client.goOffline('std_1'))
  t.match(cut, { code: 'network_error', attempts: 1 }, 'a transport failure on a write, neither')
  t.equal(server.received.length, 2)
})

t.test('per call, idempotencyKey: false turns the key (and the retries) off', async (t) => {
  const server = await scriptedServer(t, [envelope(502, 'bad_gateway')])
  const h = harness(server.url)
  const error = await failure(t, h.client.goOffline('std_1', { idempotencyKey: false }))
  t.match(error, { code: 'bad_gateway', attempts: 1 })
  t.equal(server.received[0]?.headers['idempotency-key'], undefined)
})

t.test('a write with an Idempotency-Key is retried with the same key on every attempt', async (t) => {
  const server = await scriptedServer(t, [envelope(503, 'unavailable'), 'reset', json(stream), json(stream)])
  const h = harness(server.url)
  t.same(await h.client.goLive('std_1', { title: 'Launch' }), stream)
  t.equal(server.received.length, 3)
  const keys = server.received.map((request) => request.headers['idempotency-key'])
  t.match(keys[0], UUID, 'a UUID generated for the call')
  t.same(keys, [keys[0], keys[0], keys[0]], 'the same key on every attempt')
  for (const request of server.received) {
    t.match(request, {
      method: 'POST',
      url: '/v1/studios/std_1/stream/go-live',
      body: '{"title":"Launch"}',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_KEY}` },
    })
  }
  t.match(
    h.events.filter((event) => event.type === 'attempt'),
    [
      { attempt: 1, idempotencyKey: keys[0] },
      { attempt: 2, idempotencyKey: keys[0] },
      { attempt: 3, idempotencyKey: keys[0] },
    ],
  )

  await h.client.goOffline('std_1')
  const offline = server.received[3]
  t.match(offline?.headers['idempotency-key'], UUID)
  t.not(offline?.headers['idempotency-key'], keys[0], 'another call, another key')
  t.equal(offline?.body, '', 'go-offline sends no body')
  t.equal(offline?.headers['content-type'], undefined)
})

t.test('a caller’s own Idempotency-Key is sent as is', async (t) => {
  const server = await scriptedServer(t, [envelope(500, 'internal'), json(stream)])
  const h = harness(server.url)
  await h.client.goLive('std_1', undefined, { idempotencyKey: 'order-42-golive' })
  t.same(
    server.received.map((request) => request.headers['idempotency-key']),
    ['order-42-golive', 'order-42-golive'],
  )
  await t.rejects(h.client.goLive('std_1', undefined, { idempotencyKey: 'has space' }), TypeError)
})

t.test('X-Request-Id: the client’s own per attempt when asked', async (t) => {
  const server = await scriptedServer(t, [
    envelope(503, 'unavailable', { requestId: 'echoed-1' }),
    envelope(503, 'unavailable', { requestId: 'echoed-2' }),
    envelope(503, 'unavailable', { requestId: 'echoed-3' }),
    envelope(500, 'internal', { requestId: 'trace-7' }),
    json(key),
  ])
  const h = harness(server.url, { requestIds: true })
  const error = await failure(t, h.client.getKey())
  const sent = server.received.map((request) => request.headers['x-request-id'])
  for (const id of sent) t.match(id, UUID)
  t.equal(new Set(sent).size, 3, 'one id per attempt')
  t.equal(error.requestId, 'echoed-3', 'the error carries the id of the envelope')
  t.same(
    h.events.flatMap((event) => (event.type === 'attempt' ? [event.requestId] : [])),
    sent,
  )

  await h.client.getKey({ requestId: 'trace-7' })
  t.same(
    server.received.slice(3).map((request) => request.headers['x-request-id']),
    ['trace-7', 'trace-7.2'],
    'a call’s own id, suffixed per attempt',
  )
  await t.rejects(h.client.getKey({ requestId: 'has space' }), TypeError)
  t.equal(server.received.length, 5, 'a bad id is refused before anything is sent')

  const generated = harness(server.url, { requestIds: ({ operation, attempt }) => `${operation}/${attempt}` })
  await t.rejects(generated.client.getKey(), /a request id must be 1–128/)
  t.equal(server.received.length, 5)
})

t.test('without requestIds, no X-Request-Id is sent and the gateway’s is reported', async (t) => {
  const server = await scriptedServer(t, [envelope(404, 'not_found', { requestId: 'req_0123456789abcdef' })])
  const h = harness(server.url)
  const error = await failure(t, h.client.getStudio('std_missing'))
  t.equal(server.received[0]?.headers['x-request-id'], undefined)
  t.equal(error.requestId, 'req_0123456789abcdef')
})

t.test('the hook never sees the key, and a hook that throws changes nothing', async (t) => {
  const server = await scriptedServer(t, [envelope(503, 'unavailable'), json(key)])
  const h = harness(server.url, {
    onEvent: () => {
      throw new Error('a broken logger')
    },
  })
  t.same(await h.client.getKey(), key)
  t.same(
    h.events.map((event) => event.type),
    ['attempt', 'retry', 'attempt', 'success'],
    'the retry still happened',
  )
  t.notMatch(JSON.stringify(h.events), TEST_KEY)
})

t.test('async iterators follow nextCursor to the last page', async (t) => {
  const studio = (n: number) => ({ id: `std_${n}`, name: `Studio ${n}`, createdAt: '2030-01-01T00:00:00.000Z' })
  const server = await scriptedServer(t, [
    json({ data: [studio(1), studio(2)], nextCursor: 'c1' }),
    envelope(503, 'unavailable'),
    json({ data: [studio(3)], nextCursor: null }),
    json({ data: [{ id: 'ses_1' }], nextCursor: 'same' }),
    json({ data: [{ id: 'ses_2' }], nextCursor: 'same' }),
  ])
  const h = harness(server.url)
  const ids: string[] = []
  for await (const s of h.client.studios.all({ limit: 2 })) ids.push(s.id)
  t.same(ids, ['std_1', 'std_2', 'std_3'], 'every studio, a retried page included')
  t.same(
    server.received.slice(0, 3).map((request) => request.url),
    ['/v1/studios?limit=2', '/v1/studios?limit=2&cursor=c1', '/v1/studios?limit=2&cursor=c1'],
  )

  const sessions: string[] = []
  const error = await failure(
    t,
    (async () => {
      for await (const session of h.client.sessions.all('std_1')) sessions.push(session.id)
    })(),
  )
  t.same(sessions, ['ses_1', 'ses_2'])
  t.match(error, { code: 'unexpected_response', operation: 'listSessions' })
  t.match(error.message, /same nextCursor/)
  t.equal(server.received[4]?.url, '/v1/studios/std_1/sessions?cursor=same')
})

t.test('a list answer without data is not the documented answer', async (t) => {
  const server = await scriptedServer(t, [json({ nextCursor: null })])
  const h = harness(server.url)
  t.match(await failure(t, h.client.listSessions('std_1')), { code: 'unexpected_response', status: 200 })
})

t.test('path parameters are encoded; bad arguments fail before anything is sent', async (t) => {
  const server = await scriptedServer(t, [json(stream)])
  const h = harness(server.url)
  await h.client.getStream('std/../x?y')
  t.equal(server.received[0]?.url, '/v1/studios/std%2F..%2Fx%3Fy/stream')
  for (const id of ['', '.', '..']) await t.rejects(h.client.getStudio(id), TypeError, JSON.stringify(id))
  t.equal(server.received.length, 1)

  const options = { baseUrl: server.url, apiKey: TEST_KEY }
  t.throws(() => new StudioGatewayClient({ ...options, baseUrl: 'ftp://example.com' }), TypeError)
  t.throws(() => new StudioGatewayClient({ ...options, apiKey: '' }), TypeError)
  t.throws(() => new StudioGatewayClient({ ...options, apiKey: 'sk_live_x\r\nX-Evil: 1' }), TypeError)
  t.throws(() => new StudioGatewayClient({ ...options, retry: { maxAttempts: 0 } }), RangeError)
  t.throws(() => new StudioGatewayClient({ ...options, retry: { baseDelayMs: -1 } }), RangeError)
  t.throws(() => new StudioGatewayClient({ ...options, timeoutMs: 0 }), RangeError)
  await t.rejects(h.client.getKey({ timeoutMs: Number.NaN }), RangeError)
})

t.test('a base URL with a path prefix keeps it', async (t) => {
  const server = await scriptedServer(t, [json(key)])
  const h = harness(`${server.url}/gateway/`)
  await h.client.getKey()
  t.equal(server.received[0]?.url, '/gateway/v1/key')
})

t.test('rate-limit state: the 2021 headers when the structured fields are absent', async (t) => {
  const server = await scriptedServer(t, [
    json(key, { 'ratelimit-limit': '100', 'ratelimit-remaining': '42', 'ratelimit-reset': '17' }),
    json(key, {
      ratelimit: '"hourly";r=7;t=30',
      'ratelimit-policy': '"hourly";q=10;w=3600',
      'ratelimit-remaining': '9',
    }),
    json(key, { ratelimit: 'not a structured field ((', 'ratelimit-remaining': '3' }),
  ])
  const h = harness(server.url)
  await h.client.getKey()
  t.same(h.client.rateLimit, {
    policy: undefined,
    limit: 100,
    remaining: 42,
    resetSeconds: 17,
    policies: [{ name: 'default', quota: 100, windowSeconds: undefined }],
  })
  await h.client.getKey()
  t.same(
    h.client.rateLimit,
    {
      policy: 'hourly',
      limit: 10,
      remaining: 7,
      resetSeconds: 30,
      policies: [{ name: 'hourly', quota: 10, windowSeconds: 3600 }],
    },
    'the structured fields win over the old headers',
  )
  await h.client.getKey()
  t.match(h.client.rateLimit, { remaining: 3 }, 'a field that does not parse falls back to the old headers')
})

t.test('a 429 whose wait is only in the RateLimit field waits that long', async (t) => {
  const server = await scriptedServer(t, [
    envelope(429, 'rate_limited', { headers: { ratelimit: '"default";r=0;t=3' } }),
    json(key),
  ])
  const h = harness(server.url)
  await h.client.getKey()
  const retry = h.events.find((event) => event.type === 'retry')
  t.match(retry, { delayMs: 3000 })
})
