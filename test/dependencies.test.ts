import t from 'tap'
import { createDependencyRegistry } from '../lib/dependencies.js'
import { testEngine } from './helpers/database.js'
import { startGateway } from './helpers/gateway.js'

t.test('the dependency registry reports each check, bounded in time', async (t) => {
  const registry = createDependencyRegistry()
  registry.register('up', async () => {})
  registry.register('down', async () => {
    throw new Error('connection refused')
  })
  registry.register('hung', () => new Promise(() => {}))
  const started = Date.now()
  const statuses = await registry.checkAll(100)
  t.ok(Date.now() - started < 1000, 'a hung check does not hang the report')
  t.match(statuses, [
    { name: 'up', ok: true },
    { name: 'down', ok: false, error: 'connection refused' },
    { name: 'hung', ok: false, error: /no answer within 100 ms/ },
  ])
})

t.test('the app registers its store, by engine', async (t) => {
  const gw = await startGateway(t)
  t.same(gw.app.dependencies.names(), [testEngine])
  t.match(await gw.app.dependencies.checkAll(), [{ name: testEngine, ok: true }])
})
