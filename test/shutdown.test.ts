import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { mintKey } from '../lib/mint-key.js'
import { openSqliteStore, SQLITE_FILE } from '../stores/sqlite.js'
import { allScopes } from './helpers/gateway.js'
import { type RunningCli, spawnEntry } from './helpers/process.js'

const slowServe = fileURLToPath(new URL('./helpers/slow-serve.ts', import.meta.url))

/** A data directory holding one key and one studio, and a gateway process on it whose studio reads are slow. */
async function startSlowGateway(t: Test, env: Record<string, string>) {
  const dataDir = await mkdtemp(join(tmpdir(), 'studio-gateway-shutdown-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const store = await openSqliteStore(dataDir)
  const { record, secret } = mintKey({ accountId: 'acct_shutdown', scopes: allScopes })
  await store.keys.insert(record)
  const studio = await store.studios.createStudio({ accountId: 'acct_shutdown', name: 'Drain Test' })
  await store.close()

  const gateway = spawnEntry(slowServe, [], { DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'info', ...env })
  t.teardown(() => gateway.child.kill('SIGKILL'))
  const [, origin] = await gateway.waitFor(/slow gateway at (http:\/\/127\.0\.0\.1:\d+)/)
  return { gateway, origin: origin as string, secret, studio, dataDir }
}

/** Resolves once the child has printed `count` "slow read started" lines: that many requests are in flight. */
async function inFlight(gateway: RunningCli, count: number) {
  await gateway.waitFor(new RegExp(`(slow read started\\n[^]*){${count}}`))
}

/** Elapsed wall time of a promise, in ms. */
async function timed<T>(promise: Promise<T>): Promise<[T, number]> {
  const started = Date.now()
  const value = await promise
  return [value, Date.now() - started]
}

t.test('SIGTERM: in-flight requests finish with 200, new connections are refused, the process exits 0', async (t) => {
  const { gateway, origin, secret, studio, dataDir } = await startSlowGateway(t, { SLOW_MS: '1500' })
  const calls = Array.from({ length: 4 }, () =>
    fetch(`${origin}/v1/studios/${studio.id}`, { headers: { authorization: `Bearer ${secret}` } }).then(
      async (res) => ({ status: res.status, body: (await res.json()) as { id?: string } }),
    ),
  )
  await inFlight(gateway, 4)
  gateway.child.kill('SIGTERM')

  // The listening socket closes at once: a new connection is refused while the four finish.
  await gateway.waitFor(/shutting down: no new connections/)
  await t.rejects(fetch(`${origin}/healthz`), 'a new connection after SIGTERM is refused')

  const answers = await Promise.all(calls)
  t.same(
    answers.map((answer) => [answer.status, answer.body.id]),
    Array.from({ length: 4 }, () => [200, studio.id]),
    'every request in flight when SIGTERM arrived is answered 200 with its studio',
  )
  t.same(await gateway.exited, { code: 0, signal: null }, 'then the process exits 0')
  t.match(gateway.stdout(), /shut down cleanly/)
  t.notOk(existsSync(join(dataDir, `${SQLITE_FILE}-wal`)), 'the store was closed (SQLite removed its WAL file)')
})

t.test('requests still in flight after SHUTDOWN_TIMEOUT: the process exits 1 at the bound', async (t) => {
  const { gateway, origin, secret, studio } = await startSlowGateway(t, { SLOW_MS: '20000', SHUTDOWN_TIMEOUT: '500ms' })
  fetch(`${origin}/v1/studios/${studio.id}`, { headers: { authorization: `Bearer ${secret}` } }).catch(() => {})
  await inFlight(gateway, 1)
  gateway.child.kill('SIGTERM')
  const [exit, elapsed] = await timed(gateway.exited)
  t.equal(exit.code, 1)
  t.ok(elapsed < 10_000, `exited at the bound, not after the 20 s request (${elapsed} ms)`)
  t.match(gateway.stdout(), /requests still in flight after SHUTDOWN_TIMEOUT/)
})

t.test('a second signal during the drain exits at once', async (t) => {
  const { gateway, origin, secret, studio } = await startSlowGateway(t, { SLOW_MS: '20000', SHUTDOWN_TIMEOUT: '60s' })
  fetch(`${origin}/v1/studios/${studio.id}`, { headers: { authorization: `Bearer ${secret}` } }).catch(() => {})
  await inFlight(gateway, 1)
  gateway.child.kill('SIGTERM')
  await gateway.waitFor(/shutting down: no new connections/)
  gateway.child.kill('SIGINT')
  const [exit, elapsed] = await timed(gateway.exited)
  t.equal(exit.code, 1)
  t.ok(elapsed < 10_000, `exited at once, not after the drain (${elapsed} ms)`)
  t.match(gateway.stdout(), /second signal: exiting at once/)
})
