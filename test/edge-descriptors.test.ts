import { readdirSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { connectionCeiling, DESCRIPTOR_RESERVE, REFUSAL_BAND } from '../lib/descriptors.js'
import {
  cliEntry,
  type GatewayProcess as Gateway,
  type HostileClient,
  hostileClient,
  startGatewayProcess,
  within,
} from './helpers/hostile.js'

// Real processes under a real descriptor limit (`ulimit -n`), driven from outside: a flood of
// connections past the limit, and running out of descriptors altogether. The process never exits
// for it, and serves normally once descriptors are back.

const hogEntry = fileURLToPath(new URL('./helpers/descriptor-hog.ts', import.meta.url))

const alive = (gateway: Gateway) => gateway.process.child.exitCode === null && gateway.process.child.signalCode === null
const descriptorsOf = (gateway: Gateway) => readdirSync(`/proc/${gateway.process.child.pid}/fd`).length

async function metrics(gateway: Gateway): Promise<string> {
  return (await fetch(`${gateway.origin}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
}
const series = (text: string, name: string) =>
  Number(
    text
      .split('\n')
      .find((line) => line.startsWith(`${name} `))
      ?.split(' ')[1] ?? Number.NaN,
  )

/** A few ordinary requests, in sequence: all must succeed. */
async function servesNormally(t: Test, gateway: Gateway) {
  const failures: string[] = []
  for (let i = 0; i < 20; i++) {
    const response = await fetch(`${gateway.origin}/v1/studios`, {
      headers: { authorization: `Bearer ${gateway.key}` },
      signal: AbortSignal.timeout(5000),
    })
    const body = await response.text()
    if (response.status !== 200) failures.push(`request ${i + 1}: ${response.status} ${body.slice(0, 300)}`)
  }
  // What failed, said in full: the answer's envelope tells which check refused it.
  t.same(failures, [], 'ordinary keyed requests all succeed')
  t.equal((await fetch(`${gateway.origin}/healthz`, { signal: AbortSignal.timeout(5000) })).status, 200, '/healthz')
}

t.test('ulimit -n 1024: 1,200 connections at once leave the process alive, and it serves normally after', async (t) => {
  const limit = 1024
  const gateway = await startGatewayProcess(t, cliEntry, ['serve'], { RATE_LIMIT_MAX: '1000000' }, limit)
  const cap = connectionCeiling(limit)
  t.equal(cap, limit - DESCRIPTOR_RESERVE - REFUSAL_BAND, `the cap is derived from the limit: ${cap}`)

  const request = `GET /v1/studios HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${gateway.key}\r\n\r\n`
  const clients: HostileClient[] = Array.from({ length: 1200 }, () => hostileClient(gateway.port))
  t.teardown(() => {
    for (const client of clients) client.destroy()
  })
  for (const client of clients) client.send(request)
  // Each one is answered, or refused (closed unanswered).
  const outcomes = await Promise.all(
    clients.map(async (client) => {
      const settled = await within(Promise.race([client.answer(15_000), client.ended]), 15_000)
      const answer = client.answers()[0]
      if (answer) return `${answer.status}`
      return settled === 'timeout' ? 'no answer yet' : 'refused'
    }),
  )
  const tally: Record<string, number> = {}
  for (const outcome of outcomes) tally[outcome] = (tally[outcome] ?? 0) + 1
  t.comment(`1,200 connections: ${JSON.stringify(tally)}`)
  const descriptors = descriptorsOf(gateway)
  t.comment(`open descriptors during the flood: ${descriptors} (limit ${limit}, cap ${cap})`)
  t.ok(alive(gateway), 'the process is alive')
  t.equal(tally['200'], cap, 'the connections under the cap are served')
  t.ok((tally['503'] ?? 0) > 0, 'some past it are answered 503 unavailable')
  t.ok((tally.refused ?? 0) > 0, 'the rest are refused')
  t.equal(tally['no answer yet'], undefined, 'none is left hanging')
  t.ok(descriptors <= limit - DESCRIPTOR_RESERVE + REFUSAL_BAND, 'the reserve of descriptors is kept free')

  for (const client of clients) client.destroy()
  const deadline = Date.now() + 10_000
  while (series(await metrics(gateway), 'studio_gateway_connections_open') > 1 && Date.now() < deadline) await sleep(50)
  t.ok(alive(gateway), 'still alive once they closed')
  await servesNormally(t, gateway)
})

t.test('out of descriptors altogether: the process sheds load, survives, and recovers by itself', async (t) => {
  // Sampled often, so that load shedding's memory sample runs while descriptors are out (its
  // event-loop threshold raised: on a busy test machine, it would shed the requests below).
  const gateway = await startGatewayProcess(
    t,
    hogEntry,
    [],
    { SHED_SAMPLE_INTERVAL: '100ms', SHED_MAX_EVENT_LOOP_DELAY: '10s' },
    512,
  )
  await gateway.process.waitFor(/hog ready/)
  const before = hostileClient(gateway.port)
  t.teardown(() => before.destroy())
  before.send('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
  await before.answer()
  gateway.process.child.kill('SIGWINCH')
  await gateway.process.waitFor(/holding \d+ descriptors/)
  before.send('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
  const deadline = Date.now() + 5000
  while (before.answers().length < 2 && Date.now() < deadline) await sleep(10)
  t.equal(before.answers()[1]?.status, 200, 'a connection opened before is still served')

  // New connections cannot be accepted now (libuv closes them at once: no answer), and the
  // sampling timer of load shedding cannot read /proc either.
  const refused = Array.from({ length: 20 }, () => hostileClient(gateway.port))
  for (const client of refused) client.send('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
  const ended = await Promise.all(refused.map((client) => within(client.ended, 5000)))
  t.notOk(ended.includes('timeout'), 'connections are closed, not left hanging')
  await sleep(500)
  t.ok(alive(gateway), 'alive while out of descriptors')

  gateway.process.child.kill('SIGURG')
  await gateway.process.waitFor(/descriptors released/)
  await servesNormally(t, gateway)
  const text = await metrics(gateway)
  t.ok(series(text, 'studio_gateway_descriptor_exhaustion_total{site="memory_sample"}') >= 1, 'counted')

  // EMFILE thrown from a path nobody guarded: counted, not fatal.
  gateway.process.child.kill('SIGTTIN')
  await gateway.process.waitFor(/throwing EMFILE/)
  await sleep(300)
  t.ok(alive(gateway), 'an uncaught EMFILE does not end the process')
  t.ok(series(await metrics(gateway), 'studio_gateway_descriptor_exhaustion_total{site="uncaught"}') >= 1)

  // Any other uncaught error still shuts down (gracefully), exit 1.
  gateway.process.child.kill('SIGTTOU')
  const exit = await within(gateway.process.exited, 15_000)
  t.same(exit, { code: 1, signal: null }, 'a bug still ends the process with 1')
  t.match(gateway.process.stdout(), /shutting down after an unexpected error/)
})
