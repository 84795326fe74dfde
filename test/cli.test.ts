import { PassThrough } from 'node:stream'
import t from 'tap'
import { main } from '../cli/main.js'
import { loadConfig } from '../config.js'
import { hashKey, isWellFormedKey } from '../lib/api-keys.js'
import { openStore } from '../stores/index.js'
import { freshStoreEnv } from './helpers/database.js'

/** Runs the command line in-process against the store `storeEnv` selects (DATA_DIR or DATABASE_URL). */
async function cli(storeEnv: Record<string, string>, ...argv: string[]) {
  const out = new PassThrough()
  const err = new PassThrough()
  let stdout = ''
  let stderr = ''
  out.on('data', (chunk) => {
    stdout += chunk
  })
  err.on('data', (chunk) => {
    stderr += chunk
  })
  const code = await main(argv, { out, err, env: storeEnv })
  return { code, stdout, stderr, json: () => JSON.parse(stdout) }
}

t.test('migrate on an empty database names each migration it applied, then that none is pending', async (t) => {
  const storeEnv = await freshStoreEnv(t)
  const first = await cli(storeEnv, 'migrate')
  t.equal(first.code, 0, first.stderr)
  t.match(first.stdout, /^applied migration 0001_initial\n/, 'the first migration, by name')
  t.match(first.stdout, /applied migration 0003_key_rate_limit_policies\n/, 'the latest one too')
  t.match(first.stdout, /database is at the latest migration \(\d+ applied\)\n$/)
  const again = await cli(storeEnv, 'migrate')
  t.equal(again.code, 0, again.stderr)
  t.equal(again.stdout, 'no pending migration: database is at the latest migration\n', 'a second run applies nothing')
})

t.test('command line', async (t) => {
  const storeEnv = await freshStoreEnv(t)

  t.test('keys create --json prints the documented shape, with the secret once', async (t) => {
    const res = await cli(
      storeEnv,
      'keys',
      'create',
      '--account',
      'acct_cli',
      '--scope',
      'studio:read',
      '--scope',
      'stream:read',
      '--json',
    )
    t.equal(res.code, 0)
    const key = res.json()
    t.same(Object.keys(key), ['id', 'secret', 'prefix', 'accountId', 'scopes', 'expiresAt'])
    t.match(key, { id: /^key_/, accountId: 'acct_cli', scopes: ['studio:read', 'stream:read'], expiresAt: null })
    t.ok(isWellFormedKey(key.secret))
    t.equal(key.prefix, key.secret.slice(0, 12))
    const store = await openStore(loadConfig(storeEnv))
    const stored = await store.keys.findByHash(hashKey(key.secret))
    await store.close()
    t.equal(stored?.id, key.id, 'the key is stored by its hash')

    const listed = await cli(storeEnv, 'keys', 'list', '--account', 'acct_cli', '--json')
    t.equal(listed.code, 0)
    t.notOk(listed.stdout.includes(key.secret), 'keys list never shows the secret')
    t.match(listed.json(), [
      { id: key.id, prefix: key.prefix, status: 'active', scopes: ['studio:read', 'stream:read'] },
    ])
  })

  t.test('keys create --expires-in and --rate-limit', async (t) => {
    const before = Date.now()
    const res = await cli(
      storeEnv,
      'keys',
      'create',
      '--account',
      'acct_cli',
      '--scope',
      'stream:golive',
      '--expires-in',
      '12h',
      '--rate-limit',
      '1000/1m',
      '--json',
    )
    t.equal(res.code, 0)
    const key = res.json()
    const expires = Date.parse(key.expiresAt)
    t.ok(expires >= before + 12 * 3_600_000 && expires <= Date.now() + 12 * 3_600_000)
    t.same(key.rateLimits, [{ max: 1000, window: '1m' }])
  })

  t.test('keys create and keys update: several --rate-limit policies, or the default again', async (t) => {
    const created = await cli(storeEnv, 'keys', 'create', '--account', 'acct_cli', '--scope', 'studio:read', '--json')
    const { id } = created.json()
    const updated = await cli(
      storeEnv,
      'keys',
      'update',
      id,
      '--rate-limit',
      '600/1m',
      '--rate-limit',
      '20/1s',
      '--json',
    )
    t.equal(updated.code, 0)
    t.same(updated.json().rateLimits, [
      { max: 20, window: '1s' },
      { max: 600, window: '1m' },
    ])
    const store = await openStore(loadConfig(storeEnv))
    t.teardown(() => store.close())
    t.same((await store.keys.list('acct_cli')).find((key) => key.id === id)?.rateLimits, [
      { max: 20, windowMs: 1000 },
      { max: 600, windowMs: 60_000 },
    ])
    const human = await cli(storeEnv, 'keys', 'update', id, '--default-rate-limit')
    t.equal(human.code, 0)
    t.match(human.stdout, /rate limit the gateway's default/)
    t.equal((await store.keys.list('acct_cli')).find((key) => key.id === id)?.rateLimits, null)

    for (const bad of [
      ['keys', 'update', id],
      ['keys', 'roll'],
      ['keys', 'update', id, '--rate-limit', '5/1m', '--default-rate-limit'],
      ['keys', 'update', id, '--rate-limit', '5/1m', '--rate-limit', '9/60s'],
      ['keys', 'update', id, '--rate-limit', '5/250ms'],
      ['keys', 'update', id, '--rate-limit', 'lots'],
    ]) {
      t.equal((await cli(storeEnv, ...bad)).code, 2, bad.join(' '))
    }
    t.equal((await cli(storeEnv, 'keys', 'update', 'key_nope', '--default-rate-limit')).code, 1, 'no such key')
  })

  t.test('keys create without --json prints the secret for a human', async (t) => {
    const res = await cli(storeEnv, 'keys', 'create', '--account', 'acct_cli', '--scope', 'studio:read')
    t.equal(res.code, 0)
    t.match(res.stdout, /Secret \(shown once/)
    t.match(res.stdout, /sk_live_[A-Za-z0-9]{38}/)
  })

  t.test('keys revoke', async (t) => {
    const key = (
      await cli(storeEnv, 'keys', 'create', '--account', 'acct_rev', '--scope', 'studio:read', '--json')
    ).json()
    const revoked = await cli(storeEnv, 'keys', 'revoke', key.id, '--json')
    t.equal(revoked.code, 0)
    t.match(revoked.json(), { id: key.id, status: 'revoked', revokedAt: String })
    const again = await cli(storeEnv, 'keys', 'revoke', key.id, '--json')
    t.equal(again.json().revokedAt, revoked.json().revokedAt, 'revoking twice keeps the first time')
    const missing = await cli(storeEnv, 'keys', 'revoke', 'key_nope')
    t.equal(missing.code, 1)
    t.match(missing.stderr, /no key with id/)
  })

  t.test('keys update --name and --scope; keys roll with a grace period', async (t) => {
    const key = (
      await cli(
        storeEnv,
        'keys',
        'create',
        '--account',
        'acct_roll',
        '--scope',
        'studio:read',
        '--name',
        'ci',
        '--json',
      )
    ).json()
    const renamed = await cli(
      storeEnv,
      'keys',
      'update',
      key.id,
      '--name',
      'deploys',
      '--scope',
      'stream:read',
      '--json',
    )
    t.equal(renamed.code, 0, renamed.stderr)
    t.match(renamed.json(), { id: key.id, name: 'deploys', scopes: ['stream:read'], rateLimits: null })
    t.equal((await cli(storeEnv, 'keys', 'update', key.id, '--scope', 'admin')).code, 2, 'an unknown scope')
    t.equal((await cli(storeEnv, 'keys', 'update', key.id, '--name', '')).code, 2, 'an empty name')

    const rolled = await cli(storeEnv, 'keys', 'roll', key.id, '--grace', '1h', '--json')
    t.equal(rolled.code, 0, rolled.stderr)
    const successor = rolled.json()
    t.ok(isWellFormedKey(successor.secret), 'the new secret, once')
    t.match(successor, { name: 'deploys', scopes: ['stream:read'], createdBy: 'cli', replaces: { id: key.id } })
    const graceMs = Date.parse(successor.replaces.expiresAt) - Date.now()
    t.ok(graceMs > 3_500_000 && graceMs <= 3_600_000, 'the old key expires when the grace period ends')
    const store = await openStore(loadConfig(storeEnv))
    t.teardown(() => store.close())
    t.equal(
      (await store.keys.findByHash(hashKey(successor.secret)))?.id,
      successor.id,
      'the successor is stored by hash',
    )
    t.match((await store.keys.get(key.id))?.replacedBy, successor.id)

    const again = await cli(storeEnv, 'keys', 'roll', key.id)
    t.equal(again.code, 1, 'a rolled key is not rolled twice')
    t.match(again.stderr, /rolled already/)
    const now = await cli(storeEnv, 'keys', 'roll', successor.id, '--grace', '0s')
    t.equal(now.code, 0)
    t.match(now.stdout, /New secret \(shown once/)
    for (const grace of ['8d', '1.5s', 'soon']) {
      t.equal((await cli(storeEnv, 'keys', 'roll', successor.id, '--grace', grace)).code, 2, `--grace ${grace}`)
    }
    t.equal((await cli(storeEnv, 'keys', 'roll', 'key_nope')).code, 1, 'no such key')
  })

  t.test('studios create and list', async (t) => {
    const res = await cli(storeEnv, 'studios', 'create', '--account', 'acct_cli', '--name', 'Night Show', '--json')
    t.equal(res.code, 0)
    const studio = res.json()
    t.same(Object.keys(studio), ['id', 'name', 'accountId', 'createdAt'])
    t.match(studio, { id: /^std_[A-Za-z0-9]{16}$/, name: 'Night Show', accountId: 'acct_cli' })
    const listed = await cli(storeEnv, 'studios', 'list', '--account', 'acct_cli', '--json')
    t.same(listed.json(), [studio])
    const human = await cli(storeEnv, 'studios', 'list', '--account', 'acct_cli')
    t.match(human.stdout, /Night Show/)
  })

  t.test('keys create --mode test mints a test key and gives its account a sandbox; studios --mode test', async (t) => {
    const res = await cli(
      storeEnv,
      'keys',
      'create',
      '--account',
      'acct_sandbox',
      '--scope',
      'studio:read',
      '--mode',
      'test',
      '--json',
    )
    t.equal(res.code, 0)
    const key = res.json()
    t.match(key, { id: /^key_/, secret: /^sk_test_[0-9A-Za-z]{38}$/, accountId: 'acct_sandbox', mode: 'test' })
    t.ok(isWellFormedKey(key.secret))
    t.equal(key.prefix, key.secret.slice(0, 12))
    const sandbox = await cli(storeEnv, 'studios', 'list', '--account', 'acct_sandbox', '--mode', 'test', '--json')
    t.same(
      sandbox
        .json()
        .map((studio: { name: string; mode: string }) => [studio.name, studio.mode])
        .sort(),
      [
        ['Sandbox Booth', 'test'],
        ['Sandbox Stage', 'test'],
      ],
      'the sandbox starts with two studios',
    )
    const again = await cli(
      storeEnv,
      'keys',
      'create',
      '--account',
      'acct_sandbox',
      '--scope',
      'studio:read',
      '--mode',
      'test',
    )
    t.equal(again.code, 0)
    t.match(again.stdout, /Created test key key_\w+ for acct_sandbox/)
    t.match(again.stdout, /sk_test_/)
    t.notMatch(again.stdout, /sandbox studio/, 'a sandbox that has studios gets no more')

    const created = await cli(
      storeEnv,
      'studios',
      'create',
      '--account',
      'acct_sandbox',
      '--name',
      'CI',
      '--mode',
      'test',
      '--json',
    )
    t.match(created.json(), { name: 'CI', accountId: 'acct_sandbox', mode: 'test' })
    const live = await cli(storeEnv, 'studios', 'create', '--account', 'acct_sandbox', '--name', 'Real', '--json')
    t.same(
      Object.keys(live.json()),
      ['id', 'name', 'accountId', 'createdAt'],
      'a live studio keeps the documented shape',
    )
    t.equal(
      (await cli(storeEnv, 'studios', 'list', '--account', 'acct_sandbox', '--mode', 'test', '--json')).json().length,
      3,
    )
    t.same(
      (await cli(storeEnv, 'studios', 'list', '--account', 'acct_sandbox', '--mode', 'live', '--json'))
        .json()
        .map((s: { name: string }) => s.name),
      ['Real'],
    )
    const keys = (await cli(storeEnv, 'keys', 'list', '--account', 'acct_sandbox', '--json')).json()
    t.same(
      keys.map((k: { mode: string }) => k.mode),
      ['test', 'test'],
    )
  })

  t.test('a bad argument prints usage and exits non-zero', async (t) => {
    for (const argv of [
      [],
      ['nope'],
      ['keys'],
      ['keys', 'create', '--account', 'acct_x'],
      ['keys', 'create', '--account', 'acct_x', '--scope', 'admin'],
      ['keys', 'create', '--account', 'a b', '--scope', 'studio:read'],
      ['keys', 'create', '--account', 'acct_x', '--scope', 'studio:read', '--expires-in', 'never'],
      ['keys', 'create', '--account', 'acct_x', '--scope', 'studio:read', '--rate-limit', 'fast'],
      ['keys', 'create', '--account', 'acct_x', '--scope', 'studio:read', '--bogus'],
      ['keys', 'list'],
      ['keys', 'revoke'],
      ['studios', 'create', '--account', 'acct_x'],
      ['studios', 'create', '--account', 'acct_x', '--name', 'X', '--mode', 'sandbox'],
      ['keys', 'create', '--account', 'acct_x', '--scope', 'studio:read', '--mode', 'TEST'],
      ['studios', 'list', '--account', 'acct_x', '--mode', ''],
      ['serve', 'extra'],
    ]) {
      const res = await cli(storeEnv, ...argv)
      t.not(res.code, 0, argv.join(' ') || '(nothing)')
      t.match(res.stderr + res.stdout, /Usage: studio-gateway/)
    }
  })

  t.test('a bad configuration is reported, naming the variable', async (t) => {
    const out = new PassThrough()
    let stderr = ''
    const err = new PassThrough()
    err.on('data', (chunk) => {
      stderr += chunk
    })
    const code = await main(['studios', 'list', '--account', 'acct_x'], {
      out,
      err,
      env: { ...storeEnv, LOG_LEVEL: 'loud' },
    })
    t.equal(code, 1)
    t.match(stderr, /LOG_LEVEL/)
  })

  t.test('help exits 0', async (t) => {
    const res = await cli(storeEnv, '--help')
    t.equal(res.code, 0)
    t.match(res.stdout, /keys create --account ACCT --scope S/)
  })
})
