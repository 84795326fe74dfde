import pg from 'pg'
import type { Test } from 'tap'
import t from 'tap'
import { openPostgresStore } from '../stores/postgres.js'
import { freshSchema, POSTGRES_SKIP_REASON, testDatabaseUrl } from './helpers/database.js'
import { spawnCli } from './helpers/process.js'

const skip = testDatabaseUrl === undefined ? POSTGRES_SKIP_REASON : false
if (skip) t.comment(skip)

const LISTENING = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/

/** Runs one command line to its end; returns its stdout, failing the test on a non-zero exit. */
async function run(t: Test, args: string[], env: Record<string, string>) {
  const cli = spawnCli(args, env)
  const { code } = await cli.exited
  t.equal(code, 0, `${args.slice(0, 2).join(' ')}: ${cli.stderr()}`)
  return cli.stdout()
}

t.test('several instances on one PostgreSQL, as docs/scaling.md runs them', { skip }, async (t) => {
  const env = { DATABASE_URL: await freshSchema(t), LOG_LEVEL: 'warn' }

  t.match(await run(t, ['migrate'], env), /applied migration 0001_initial\n[\s\S]*database is at the latest migration/)
  t.match(await run(t, ['migrate'], env), /^no pending migration/, 'migrating again is a no-op')
  const key = JSON.parse(
    await run(t, ['keys', 'create', '--account', 'acct_multi', '--scope', 'studio:read', '--json'], env),
  ) as { id: string; secret: string }
  await Promise.all(
    ['Alpha', 'Beta', 'Gamma'].map((name) =>
      run(t, ['studios', 'create', '--account', 'acct_multi', '--name', name], env),
    ),
  )

  const instances = [1, 2].map(() => spawnCli(['serve'], { ...env, PORT: '0', LOG_LEVEL: 'info' }))
  for (const instance of instances) t.teardown(() => instance.child.kill('SIGKILL'))
  const origins = await Promise.all(instances.map(async (instance) => (await instance.waitFor(LISTENING))[1]))
  t.notOk(
    instances.some((instance) => /STUDIO_KEY/.test(instance.stdout())),
    'no demo seed on PostgreSQL',
  )
  const [a, b] = origins as [string, string]
  const get = (origin: string, path: string) =>
    fetch(`${origin}${path}`, { headers: { authorization: `Bearer ${key.secret}` } })

  const first = (await (await get(a, '/v1/studios?limit=2')).json()) as {
    data: Array<{ name: string }>
    nextCursor: string
  }
  t.equal(first.data.length, 2, 'instance A serves the key and the studios created by the command line')
  const rest = (await (await get(b, `/v1/studios?limit=2&cursor=${encodeURIComponent(first.nextCursor)}`)).json()) as {
    data: Array<{ name: string }>
    nextCursor: string | null
  }
  t.equal(rest.data.length, 1, 'instance B continues the cursor A issued: one signing secret, in the store')
  t.same([...first.data, ...rest.data].map((studio) => studio.name).sort(), ['Alpha', 'Beta', 'Gamma'])

  await run(t, ['keys', 'revoke', key.id], env)
  const listed = JSON.parse(await run(t, ['keys', 'list', '--account', 'acct_multi', '--json'], env))
  t.match(listed, [{ id: key.id, status: 'revoked' }])

  for (const instance of instances) instance.child.kill('SIGTERM')
  for (const instance of instances) t.equal((await instance.exited).code, 0, 'a clean shutdown')
})

t.test(
  'a DATABASE_URL that does not answer stops serve and the command line with a clear message',
  { skip },
  async (t) => {
    // Port 9 (discard) on loopback: nothing listens there.
    const env = { DATABASE_URL: 'postgres://postgres:s3cret-password@127.0.0.1:9/test' }
    await Promise.all(
      [['serve'], ['keys', 'list', '--account', 'acct_x']].map(async (args) => {
        const cli = spawnCli(args, { ...env, PORT: '0' })
        const { code } = await cli.exited
        t.equal(code, 1, args.join(' '))
        t.match(cli.stderr() + cli.stdout(), /ECONNREFUSED/)
        t.notMatch(cli.stderr() + cli.stdout(), /s3cret-password/, 'the password is never printed')
      }),
    )
  },
)

t.test('migrating while other schemas of the database are created and dropped', { skip }, async (t) => {
  // Another deployment, or another test run, on the same database: its schemas come and go while
  // ours migrates. Kysely's own introspection looked every schema up by name and failed with
  // "schema … does not exist" when one was dropped meanwhile.
  const admin = new pg.Client({ connectionString: testDatabaseUrl })
  admin.on('error', () => {})
  await admin.connect()
  t.teardown(() => admin.end())
  const prefix = `sg_churn_${process.pid}_`
  let churning = true
  const churn = (async () => {
    for (let i = 0; churning; i++) {
      await admin.query(`create schema ${prefix}${i}; create table ${prefix}${i}.t (id serial primary key)`)
      await admin.query(`drop schema ${prefix}${i} cascade`)
    }
  })()
  try {
    for (let i = 0; i < 15; i++) {
      const store = await openPostgresStore(await freshSchema(t))
      t.ok(await store.keys.list('acct_churn'), `migration ${i + 1} of 15 completed`)
      await store.close()
    }
  } finally {
    churning = false
    await churn
  }
})
