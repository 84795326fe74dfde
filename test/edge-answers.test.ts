import t, { type Test } from 'tap'
import { startGateway, type TestGateway } from './helpers/gateway.js'
import { type HostileClient, hostileClient, type RawAnswer, released, within } from './helpers/hostile.js'
import { listenLocally } from './helpers/raw-http.js'

// Every answer, on every path, is the envelope with X-Request-Id, no-store and nosniff — including
// those Node's HTTP layer used to give by itself — and pipelined requests keep their answers.

function assertEnvelope(t: Test, answer: RawAnswer | undefined, status: number, code: string) {
  t.equal(answer?.status, status, `${status}`)
  t.equal(answer?.error?.code, code, code)
  t.match(answer?.headers['x-request-id'], /^req_[0-9a-f]{16}$/, 'an X-Request-Id')
  t.equal(answer?.error?.requestId, answer?.headers['x-request-id'], 'requestId equals X-Request-Id')
  t.equal(answer?.headers['cache-control'], 'no-store', 'no-store')
  t.equal(answer?.headers['x-content-type-options'], 'nosniff', 'nosniff')
}

/** Sends `bytes` on a fresh connection; resolves with every answer once the gateway closes it. */
async function exchange(port: number, bytes: string, waitMs = 5000): Promise<RawAnswer[]> {
  const client = hostileClient(port)
  client.send(bytes)
  const first = await client.answer(waitMs).catch(() => undefined)
  if (first?.headers.connection === 'close' || first === undefined) await within(client.ended, waitMs)
  client.destroy()
  return client.answers()
}

const remaining = (answer: RawAnswer | undefined) => Number(answer?.headers['ratelimit-remaining'])

async function metric(gw: TestGateway, name: string): Promise<number> {
  const text = (await gw.app.inject('/metrics')).body
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.split(' ')[1])
}

t.test('HTTP/1.1 without Host: 400 invalid_request in the envelope, not Node bare 400', async (t) => {
  const gw = await startGateway(t)
  const [answer] = await exchange(await listenLocally(gw), 'GET /v1/studios HTTP/1.1\r\n\r\n')
  assertEnvelope(t, answer, 400, 'invalid_request')
  t.match(answer?.error?.message, /Host/)
})

t.test('Expect other than 100-continue: 400 invalid_request in the envelope, not Node bare 417', async (t) => {
  const gw = await startGateway(t)
  const [answer] = await exchange(await listenLocally(gw), 'GET /v1/studios HTTP/1.1\r\nHost: x\r\nExpect: foo\r\n\r\n')
  assertEnvelope(t, answer, 400, 'invalid_request')
  t.match(answer?.error?.message, /Expect/)
})

t.test('CONNECT: 404 not_found in the envelope, and it spends the client IP failure budget', async (t) => {
  const gw = await startGateway(t)
  const port = await listenLocally(gw)
  const [first] = await exchange(port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')
  assertEnvelope(t, first, 404, 'not_found')
  const [second] = await exchange(port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')
  t.equal(remaining(second), remaining(first) - 1, 'the budget went down')
})

t.test('a method the router does not know (QUERY): 404 not_found, spending the IP failure budget', async (t) => {
  const gw = await startGateway(t)
  const port = await listenLocally(gw)
  const request = 'QUERY /v1/studios HTTP/1.1\r\nHost: x\r\n\r\n'
  const [first] = await exchange(port, request)
  assertEnvelope(t, first, 404, 'not_found')
  const [second] = await exchange(port, request)
  t.equal(remaining(second), remaining(first) - 1, 'the budget went down')
  // The body of an unknown route is never parsed: 404 whatever its content type.
  const [plain] = await exchange(
    port,
    'POST /v1/nowhere HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello',
  )
  assertEnvelope(t, plain, 404, 'not_found')
  t.equal(remaining(plain), remaining(second) - 1, 'and spends the budget too')
})

t.test('a method Node parser cannot parse at all: 400 invalid_request, then the connection is let go', async (t) => {
  const gw = await startGateway(t, { env: { LINGER_TIMEOUT: '300ms' } })
  // A client that keeps its side open after the answer: the gateway must not wait for it.
  const client = hostileClient(await listenLocally(gw))
  client.send('FROBNICATE /v1/studios HTTP/1.1\r\nHost: x\r\n\r\n')
  assertEnvelope(t, await client.answer(), 400, 'invalid_request')
  t.equal(await released(gw.app.server, 5000), 'released', 'the gateway let go of the connection')
})

t.test('a go-live pipelined before a malformed request is answered, and logged, before the 400', async (t) => {
  const gw = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
  const { secret, accountId } = await gw.key()
  const studio = await gw.studio(accountId)
  const body = '{"title":"pipelined"}'
  const answers = await exchange(
    await listenLocally(gw),
    `POST /v1/studios/${studio}/stream/go-live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secret}\r\n` +
      `Content-Type: application/json\r\nX-Request-Id: pipelined-go-live\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
      'GET /v1/key HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n',
  )
  t.equal(answers.length, 2, 'two answers on the connection')
  t.equal(answers[0]?.status, 200, 'the go-live first')
  t.equal(JSON.parse(answers[0]?.body ?? '{}').status, 'live')
  assertEnvelope(t, answers[1], 400, 'invalid_request')
  t.equal(answers[1]?.headers.connection, 'close', 'then the connection closes')
  const logged = gw.logs.find((line) => line.requestId === 'pipelined-go-live' && line.msg === 'request completed')
  t.equal(logged?.status, 200, 'the go-live has its access-log line')
})

t.test(
  'a Content-Length shorter than the body: the request as declared is answered, then 400 for the rest',
  async (t) => {
    const gw = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
    const { secret, accountId } = await gw.key()
    const studio = await gw.studio(accountId)
    const answers = await exchange(
      await listenLocally(gw),
      `POST /v1/studios/${studio}/stream/go-live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secret}\r\n` +
        'Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}{"title":"beyond the declared length"}\r\n\r\n',
    )
    t.equal(answers.length, 2, 'two answers')
    t.equal(answers[0]?.status, 200, 'the declared request first')
    assertEnvelope(t, answers[1], 400, 'invalid_request')
  },
)

t.test('a client that aborts mid-body is counted apart, logged below warn, never internal', async (t) => {
  const gw = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
  const { secret, accountId } = await gw.key()
  const studio = await gw.studio(accountId)
  const port = await listenLocally(gw)
  const head =
    `POST /v1/studios/${studio}/stream/go-live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secret}\r\n` +
    'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"title":'
  const aborted = () => gw.logs.filter((line) => line.msg === 'connection closed before the request was complete')
  // Once closed (FIN), once reset (RST).
  const ends: Array<(client: HostileClient) => void> = [(c) => c.socket.end(), (c) => c.socket.resetAndDestroy()]
  for (const [index, end] of ends.entries()) {
    const client = hostileClient(port)
    client.send(head)
    await new Promise((resolve) => setTimeout(resolve, 100))
    end(client)
    const deadline = Date.now() + 5000
    while (aborted().length < index + 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  }
  t.equal(aborted().length, 2, 'both aborts noticed')
  t.ok(
    aborted().every((line) => (line.level as number) < 40),
    'logged below warn',
  )
  t.notOk(
    gw.logs.some((line) => (line.level as number) >= 40),
    'nothing at warn or above',
  )
  t.equal(await metric(gw, 'studio_gateway_client_aborts_total'), 2, 'counted in client_aborts_total')
  t.equal(await metric(gw, 'studio_gateway_errors_total{code="internal"}'), 0, 'never internal')
})
