import { once } from 'node:events'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { startGateway, type TestGateway } from './helpers/gateway.js'
import { hostileClient, openConnections, type RawAnswer, released, within } from './helpers/hostile.js'
import { listenLocally } from './helpers/raw-http.js'

// The edge's time bounds, driven through raw sockets (docs/edge.md). Bounds are short here so the
// file stays fast; every wait below is several times the bound, so a slow machine does not flake.
const BOUNDS = {
  HEADERS_TIMEOUT: '300ms',
  REQUEST_TIMEOUT: '600ms',
  KEEP_ALIVE_TIMEOUT: '300ms',
  LINGER_TIMEOUT: '500ms',
  LINGER_MAX_KB: '64',
}
/** How long a test waits for the gateway to close a connection whose bound is well under a second. */
const CLOSED_WITHIN_MS = 5000

function assertEnvelope(t: Test, answer: RawAnswer, status: number, code: string) {
  t.equal(answer.status, status, `${status}`)
  t.equal(answer.error?.code, code, code)
  t.match(answer.headers['x-request-id'], /^req_[0-9a-f]{16}$/, 'a generated X-Request-Id')
  t.equal(answer.error?.requestId, answer.headers['x-request-id'], 'requestId equals X-Request-Id')
  t.equal(answer.headers['cache-control'], 'no-store')
  t.equal(answer.headers['x-content-type-options'], 'nosniff')
}

t.test(
  'headers dripped past HEADERS_TIMEOUT: 400 invalid_request in the envelope, then the connection closes',
  async (t) => {
    const gw = await startGateway(t, { env: BOUNDS })
    const port = await listenLocally(gw)
    const client = hostileClient(port)
    client.drip('GET /v1/studios HTTP/1.1\r\nHost: localhost\r\nX-Slow: one byte at a time, for ever and ever\r\n', 50)
    t.not(await within(client.closed, CLOSED_WITHIN_MS), 'timeout', 'the gateway closed the connection')
    const [answer] = client.answers()
    t.ok(answer, 'an answer came first')
    if (answer) {
      assertEnvelope(t, answer, 400, 'invalid_request')
      t.match(answer.error?.message, /not received in time/)
      t.equal(answer.headers.connection, 'close')
    }
  },
)

t.test('a connection that sends nothing is answered 400 and closed after HEADERS_TIMEOUT', async (t) => {
  const gw = await startGateway(t, { env: BOUNDS })
  const client = hostileClient(await listenLocally(gw))
  t.equal((await client.answer()).error?.code, 'invalid_request')
  t.equal(await released(gw.app.server, CLOSED_WITHIN_MS), 'released', 'the gateway let go of the connection')
})

t.test(
  'a body dripped past REQUEST_TIMEOUT is answered 400 by its route, with its request id and log line',
  async (t) => {
    const gw = await startGateway(t, { env: { ...BOUNDS, WRITES_ENABLED: 'true' } })
    const { secret, accountId } = await gw.key()
    const studio = await gw.studio(accountId)
    const client = hostileClient(await listenLocally(gw))
    const body = JSON.stringify({ title: 'a title that takes far too long to arrive' })
    client.send(
      `POST /v1/studios/${studio}/stream/go-live HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${secret}\r\n` +
        `Content-Type: application/json\r\nX-Request-Id: slow-body-1\r\nContent-Length: ${body.length}\r\n\r\n`,
    )
    client.drip(body, 100)
    t.not(await within(client.closed, CLOSED_WITHIN_MS), 'timeout', 'closed')
    const [answer] = client.answers()
    t.equal(answer?.status, 400)
    t.equal(answer?.error?.code, 'invalid_request')
    t.equal(answer?.headers['x-request-id'], 'slow-body-1', "the request's own id")
    t.match(answer?.error?.message, /not received in time/)
    const line = gw.logs.find((entry) => entry.requestId === 'slow-body-1' && entry.msg === 'request completed')
    t.equal(line?.status, 400, 'the access log has the request, answered 400')
    const stream = await gw.app.inject({
      url: `/v1/studios/${studio}/stream`,
      headers: { authorization: `Bearer ${secret}` },
    })
    t.equal(stream.json().status, 'offline', 'the go-live never ran')
  },
)

t.test('an answer sent before the body is read closes the connection after a lingering close', async (t) => {
  const gw = await startGateway(t, { env: BOUNDS })
  const client = hostileClient(await listenLocally(gw))
  // No key: refused at once, while the client goes on sending the body it announced.
  client.send('POST /v1/studios/std_x/stream/go-live HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n')
  client.drip('x'.repeat(100_000), 20)
  const answer = await client.answer()
  assertEnvelope(t, answer, 401, 'invalid_key')
  t.equal(answer.headers.connection, 'close', 'the answer says the connection closes')
  t.not(await within(client.closed, CLOSED_WITHIN_MS), 'timeout', 'closed, though the client is still sending')
})

t.test('the lingering close reads at most LINGER_MAX_KB, then stops reading until LINGER_TIMEOUT', async (t) => {
  const gw = await startGateway(t, { env: { ...BOUNDS, LINGER_TIMEOUT: '2s' } })
  const client = hostileClient(await listenLocally(gw))
  client.send('POST /v1/studios/std_x/stream/go-live HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000\r\n\r\n')
  t.equal((await client.answer()).status, 401)
  // Send as fast as the gateway takes it: bytes whose write completed have left the client.
  let delivered = 0
  const chunk = Buffer.alloc(256 * 1024, 'x')
  const pump = () => {
    while (!client.socket.destroyed && client.socket.write(chunk, () => (delivered += chunk.length))) {}
    if (!client.socket.destroyed) client.socket.once('drain', pump)
  }
  pump()
  await sleep(700)
  const stalledAt = delivered
  await sleep(500)
  // Loopback would carry hundreds of megabytes in that time: the gateway has stopped reading,
  // so only what the kernel buffers got through.
  t.ok(delivered - stalledAt < 1024 * 1024, `the client's sending stalled (${delivered} bytes in all)`)
  t.not(await within(client.closed, CLOSED_WITHIN_MS), 'timeout', 'and the connection is closed at LINGER_TIMEOUT')
})

/** The explorer's script bundle (1.7 MB), pipelined `count` times: far more than loopback's buffers hold. */
const bundles = (count: number) =>
  'GET /docs/static/swagger-ui-bundle.js HTTP/1.1\r\nHost: localhost\r\n\r\n'.repeat(count)
/** REQUEST_TIMEOUT + 2 checks (every quarter of HEADERS_TIMEOUT here): the stall bound of BOUNDS. */
const STALL_MS = 600 + 2 * 75

/** A connection that asks for `count` bundles and reads nothing until the test does; when it asked. */
async function unreadBundles(t: Test, gw: TestGateway, count: number) {
  const socket = connect(await listenLocally(gw), '127.0.0.1')
  socket.on('error', () => {})
  t.teardown(() => socket.destroy())
  socket.pause()
  await once(socket, 'connect')
  const sentAt = Date.now()
  socket.write(bundles(count))
  return { socket, sentAt }
}

t.test('a client that stops reading its answers is disconnected after REQUEST_TIMEOUT + 2 checks', async (t) => {
  const gw = await startGateway(t, { env: BOUNDS })
  const { sentAt } = await unreadBundles(t, gw, 20)
  t.equal(await released(gw.app.server, CLOSED_WITHIN_MS), 'released', 'the gateway let go of the connection')
  t.ok(Date.now() - sentAt >= STALL_MS, `not before the bound (${Date.now() - sentAt} ms)`)
  const text = (await gw.app.inject('/metrics')).body
  t.match(text, /^studio_gateway_connections_stalled_total 1$/m, 'counted as stalled')
})

t.test('a client that reads its answers slowly keeps its connection', async (t) => {
  const gw = await startGateway(t, { env: BOUNDS })
  const { socket } = await unreadBundles(t, gw, 80)
  // 1 MiB every 100 ms, for four times the bound. Each read makes room for the gateway's next
  // writes, though only in steps: Linux wakes a writer once a third of its send buffer (megabytes
  // on loopback) is free, so a client reading much slower than this here would go for longer than
  // the bound without a write of the gateway completing, and be cut off as stalled.
  let received = 0
  const until = Date.now() + 4 * STALL_MS
  while (Date.now() < until && !socket.destroyed) {
    await sleep(100)
    const chunk: Buffer | null = socket.read(1024 * 1024) ?? socket.read()
    received += chunk?.length ?? 0
  }
  t.notOk(socket.destroyed, 'still connected')
  t.equal(await openConnections(gw.app.server), 1, 'the gateway keeps it')
  t.ok(received > 0 && received < 80 * 1_600_000, `mid-answer all along (${received} bytes read)`)
  const text = (await gw.app.inject('/metrics')).body
  t.match(text, /^studio_gateway_connections_stalled_total 0$/m, 'nothing counted as stalled')
})

t.test('an idle kept-alive connection closes after KEEP_ALIVE_TIMEOUT', async (t) => {
  const gw = await startGateway(t, { env: BOUNDS })
  const client = hostileClient(await listenLocally(gw))
  client.send('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n')
  const answer = await client.answer()
  t.equal(answer.status, 200)
  t.not(answer.headers.connection, 'close', 'kept alive')
  // Node adds a second to the bound it announces (Keep-Alive: timeout=…), so clients close first.
  t.equal(await released(gw.app.server, CLOSED_WITHIN_MS), 'released', 'closed once idle')
})
