import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { REFUSAL_BAND } from '../lib/descriptors.js'
import { bearer, startGateway, type TestGateway } from './helpers/gateway.js'
import { type HostileClient, hostileClient, openConnections, released, within } from './helpers/hostile.js'
import { listenLocally } from './helpers/raw-http.js'

// The connection cap (MAX_CONNECTIONS, derived from the descriptor limit by default) and running
// out of descriptors: past the cap, 503 unavailable or a refusal, never a crash; service returns
// by itself.

async function untilOpen(gw: TestGateway, count: number) {
  const deadline = Date.now() + 5000
  while ((await openConnections(gw.app.server)) < count && Date.now() < deadline) await sleep(10)
  return openConnections(gw.app.server)
}

async function metric(gw: TestGateway, series: string): Promise<number> {
  const text = (await gw.app.inject('/metrics')).body
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? Number.NaN : Number(line.split(' ')[1])
}

t.test(
  'past MAX_CONNECTIONS: 503 unavailable with Retry-After, then refusals; service returns once they close',
  async (t) => {
    const max = 4
    // Long header bound: the idle connections below must stay open for the test.
    const gw = await startGateway(t, { env: { MAX_CONNECTIONS: String(max), HEADERS_TIMEOUT: '30s' } })
    const { secret } = await gw.key()
    const port = await listenLocally(gw)
    const held: HostileClient[] = []
    t.teardown(() => {
      for (const client of held) client.destroy()
    })
    for (let i = 0; i < max; i++) held.push(hostileClient(port))
    t.equal(await untilOpen(gw, max), max, 'the cap is reached')

    const over = hostileClient(port)
    held.push(over)
    over.send(`GET /v1/studios HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secret}\r\n\r\n`)
    const refused = await over.answer()
    t.equal(refused.status, 503)
    t.equal(refused.error?.code, 'unavailable')
    t.equal(refused.error?.requestId, refused.headers['x-request-id'], 'the envelope, with its X-Request-Id')
    t.equal(refused.headers['retry-after'], '1', 'Retry-After')
    t.equal(refused.headers.connection, 'close', 'and the connection closes')

    const probe = hostileClient(port)
    held.push(probe)
    probe.send('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
    t.equal((await probe.answer()).status, 200, 'the liveness probe still answers: a flood is not a reason to restart')

    // Fill the refusal band: Node refuses the connections past it before reading them.
    while ((await openConnections(gw.app.server)) < max + REFUSAL_BAND) {
      held.push(hostileClient(port))
      await untilOpen(gw, Math.min(held.length, max + REFUSAL_BAND))
    }
    const dropped = hostileClient(port)
    held.push(dropped)
    dropped.send('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
    t.not(await within(dropped.ended, 5000), 'timeout', 'past the band, the connection is closed at once')
    t.equal(dropped.received(), '', 'unanswered')
    t.ok((await metric(gw, 'studio_gateway_connections_refused_total{reason="over_capacity"}')) >= 1)
    t.ok((await metric(gw, 'studio_gateway_connections_refused_total{reason="limit"}')) >= 1)

    for (const client of held.splice(0)) client.destroy()
    t.equal(await released(gw.app.server, 5000), 'released', 'every connection closed')
    const again = hostileClient(port)
    held.push(again)
    again.send(`GET /v1/studios HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secret}\r\n\r\n`)
    const served = await again.answer()
    t.equal(served.status, 200, 'served normally again')
    t.not(served.headers.connection, 'close', 'and kept alive')
  },
)

t.test('running out of descriptors on accept sheds load instead of ending the process', async (t) => {
  const gw = await startGateway(t)
  const { secret } = await gw.key()
  const port = await listenLocally(gw)
  // What libuv reports when accept(2) fails with EMFILE: an 'error' event on the server.
  const shortage = Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' })
  t.doesNotThrow(() => gw.app.server.emit('error', shortage), 'the process goes on')
  t.equal(await metric(gw, 'studio_gateway_descriptor_exhaustion_total{site="accept"}'), 1, 'counted')
  const client = hostileClient(port)
  t.teardown(() => client.destroy())
  client.send(`GET /v1/studios HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secret}\r\n\r\n`)
  const answer = await client.answer()
  t.equal(answer.status, 200, 'requests are still served')
  t.equal(answer.headers.connection, 'close', 'each connection closes after its answer, to give descriptors back')
  t.ok(
    gw.logs.some((line) => line.level === 40 && /out of file descriptors/.test(String(line.msg))),
    'logged at warn',
  )
  const later = await gw.app.inject({ url: '/v1/studios', headers: bearer(secret) })
  t.equal(later.statusCode, 200)
})
