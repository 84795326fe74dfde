import { mkdtemp, rm } from 'node:fs/promises'
import { type AddressInfo, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { spawnCli } from './helpers/process.js'

const BANNER =
  /export STUDIO_KEY=(sk_live_[A-Za-z0-9]{38})\n\s+curl -H "Authorization: Bearer \$STUDIO_KEY" (http:\/\/127\.0\.0\.1:\d+)\/v1\/studios/

t.test('serve: first start seeds the demo and prints a working key; a restart keeps the data', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'studio-gateway-serve-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const env = { DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'warn' }

  const first = spawnCli(['serve'], env)
  t.teardown(() => first.child.kill('SIGKILL'))
  const [, secret, origin] = await first.waitFor(BANNER)
  const studios = await fetch(`${origin}/v1/studios`, { headers: { authorization: `Bearer ${secret}` } })
  t.equal(studios.status, 200)
  t.same(
    ((await studios.json()) as { data: Array<{ id: string }> }).data.map((s) => s.id),
    ['std_DemoMainStage001', 'std_DemoPodcastBooth'],
  )
  const stream = await fetch(`${origin}/v1/studios/std_DemoMainStage001/stream`, {
    headers: { 'x-api-key': secret as string },
  })
  t.equal(stream.status, 200)
  first.child.kill('SIGTERM')
  t.same(await first.exited, { code: 0, signal: null }, 'SIGTERM: a clean exit')

  const second = spawnCli(['serve'], { ...env, LOG_LEVEL: 'info' })
  t.teardown(() => second.child.kill('SIGKILL'))
  const [, url] = await second.waitFor(/Server listening at (http:\/\/127\.0\.0\.1:\d+)/)
  t.notMatch(second.stdout(), /STUDIO_KEY/, 'no second seed on a store with data')
  const again = await fetch(`${url}/v1/studios/std_DemoPodcastBooth`, {
    headers: { authorization: `Bearer ${secret}` },
  })
  t.equal(again.status, 200, 'the demo key survived the restart')
  second.child.kill('SIGINT')
  t.equal((await second.exited).code, 0)
})

t.test('serve: NODE_ENV=production does not seed', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'studio-gateway-prod-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const server = spawnCli(['serve'], { DATA_DIR: dataDir, PORT: '0', NODE_ENV: 'production' })
  t.teardown(() => server.child.kill('SIGKILL'))
  const [, url] = await server.waitFor(/Server listening at (http:\/\/127\.0\.0\.1:\d+)/)
  t.notMatch(server.stdout(), /STUDIO_KEY/)
  t.equal((await fetch(`${url}/v1/studios`)).status, 401)
  server.child.kill('SIGTERM')
  t.equal((await server.exited).code, 0)
})

t.test('serve: a bad configuration stops the start with a message naming the variable', async (t) => {
  const server = spawnCli(['serve'], { PORT: 'eighty' })
  const { code } = await server.exited
  t.equal(code, 1)
  t.match(server.stderr(), /PORT must be a whole number/)
})

t.test('serve: a port already in use stops the start with exit 1, not a clean exit', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'studio-gateway-port-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => blocker.close())
  const { port } = blocker.address() as AddressInfo
  const server = spawnCli(['serve'], { DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'warn' })
  t.teardown(() => server.child.kill('SIGKILL'))
  t.equal((await server.exited).code, 1)
  t.match(server.stderr(), /EADDRINUSE/)
})
