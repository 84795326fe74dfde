import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { errorCodes } from '../lib/errors.js'
import { startGateway } from './helpers/gateway.js'
import { repoRoot } from './helpers/process.js'

const run = promisify(execFile)

/**
 * The example consumer's CI (examples/consumer-ci) against a real listening gateway: the typed
 * client's retry policy meets every code of the catalog as the gateway simulates it for a test key.
 */
t.test('the example consumer CI passes against a listening gateway, covering every code', async (t) => {
  const gw = await startGateway(t)
  const baseUrl = await gw.app.listen({ port: 0, host: '127.0.0.1' })
  const { secret } = await gw.key({ accountId: 'acct_consumer', mode: 'test' })
  const studioId = await gw.studio('acct_consumer', 'CI stage', 'test')

  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-reporter=tap', 'error-paths.test.ts'],
    {
      cwd: join(repoRoot, 'examples/consumer-ci'),
      env: { PATH: process.env.PATH ?? '', STUDIO_GATEWAY_URL: baseUrl, STUDIO_TEST_KEY: secret },
      timeout: 60_000,
    },
  ).catch((error: { stdout?: string; stderr?: string }) => {
    t.fail(`the consumer's CI failed:\n${error.stdout ?? ''}\n${error.stderr ?? ''}`)
    return { stdout: error.stdout ?? '' }
  })
  for (const code of errorCodes) t.match(stdout, new RegExp(`^\\s*ok \\d+ - ${code}: `, 'm'), `${code} exercised`)
  t.notMatch(stdout, /^\s*not ok/m)

  // The sandbox studio went live through the retries; live data was never touched.
  const stream = await gw.store.studios.getStream(
    { accountId: 'acct_consumer', mode: 'test', requestId: 'r' },
    studioId,
  )
  t.equal(stream?.status, 'live')
  t.same(await gw.store.studios.listAccountStudios('acct_consumer', 'live'), [])
})
