import { randomUUID } from 'node:crypto'
import type { InjectOptions } from 'fastify'
import type { Test } from 'tap'
import t from 'tap'
import { startReferenceUpstream } from '../examples/reference-upstream.js'
import { hashKey } from '../lib/api-keys.js'
import { bearer, errorOf, startGateway, type TestGateway } from './helpers/gateway.js'
import { spawnCli } from './helpers/process.js'

async function cliOutput(args: string[], env: Record<string, string>): Promise<string> {
  const cli = spawnCli(args, env)
  await cli.exited
  return cli.stdout()
}

// Security properties as tests. That no secret reaches a log is also checked for every gateway of
// the suite when it closes (test/helpers/gateway.ts); here, the properties that need a setup.

t.test('the stored key hash is not reversible to anything the gateway prints', async (t) => {
  const gw = await startGateway(t, { env: { LOG_LEVEL: 'trace' } })
  const { secret, id } = await gw.key()
  const record = (await gw.store.keys.list('acct_test')).find((key) => key.id === id)
  t.equal(record?.hash, hashKey(secret), 'the store holds the SHA-256 of the secret, not the secret')
  t.notOk(JSON.stringify(record).includes(secret.slice(12)), 'nor the part of it beyond the display prefix')

  const printed = [
    (await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })).body,
    (await gw.app.inject({ url: '/v1/studios/nope', headers: bearer(secret) })).body,
    await cliOutput(['keys', 'list', '--account', 'acct_test', '--json'], gw.storeEnv),
    await cliOutput(['keys', 'list', '--account', 'acct_test'], gw.storeEnv),
    gw.logText(),
  ]
  for (const text of printed) {
    t.notOk(text.includes(record?.hash ?? ''), 'the hash itself is never printed')
    // 34 random characters (about 200 bits) stay unknown: no window of 8 of them is printed.
    const hidden = secret.slice(12)
    const windows = Array.from({ length: hidden.length - 7 }, (_, i) => hidden.slice(i, i + 8))
    t.notOk(
      windows.some((window) => text.includes(window)),
      'nothing beyond the display prefix is printed',
    )
  }
  t.match(printed[0], secret.slice(0, 12), 'the display prefix is what identifies a key')
})

/** Headers that differ from one request to the next whatever the answer. */
const VARYING = new Set(['x-request-id', 'ratelimit-remaining', 'ratelimit-reset', 'ratelimit', 'date'])

/** An answer with what the request itself chose (its id, the studio id it sent) left out. */
function comparable(response: { statusCode: number; headers: Record<string, unknown>; body: string }, id: string) {
  const requestId = String(response.headers['x-request-id'])
  const headers = Object.fromEntries(Object.entries(response.headers).filter(([name]) => !VARYING.has(name)))
  const body = response.body.replaceAll(requestId, '<request id>').replaceAll(id, '<studio id>')
  return { status: response.statusCode, headers, body }
}

async function crossAccountIsMissing(t: Test, gw: TestGateway, foreignId: string, readStream: () => Promise<unknown>) {
  const { secret } = await gw.key({ accountId: 'acct_attacker' })
  const before = await readStream()
  const paths = ['', '/stream', '/sessions', '/sessions?limit=1', '/stream/go-live', '/stream/go-offline']
  const methods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const
  for (const path of paths) {
    for (const method of methods) {
      for (const idempotent of [false, true]) {
        const headers = idempotent ? { 'x-api-key': secret, 'idempotency-key': randomUUID() } : bearer(secret)
        const send = (id: string) =>
          gw.app.inject({
            method,
            url: `/v1/studios/${id}${path}`,
            headers: idempotent ? { ...headers, 'idempotency-key': randomUUID() } : headers,
          } as InjectOptions)
        const foreign = await send(foreignId)
        const missingId = 'std_DoesNotExist0001'
        const missing = await send(missingId)
        t.equal(foreign.statusCode, 404, `${method} ${path || '/'}: 404`)
        t.equal(errorOf(t, foreign).code, 'not_found')
        t.same(
          comparable(foreign, foreignId),
          comparable(missing, missingId),
          `${method} ${path || '/'}: the same answer as a missing studio`,
        )
      }
    }
  }
  t.same(await readStream(), before, "the other account's stream was not touched")
}

t.test("another account's studio answers 404 on every route and method, as a missing one", async (t) => {
  t.test('on the store', async (t) => {
    const gw = await startGateway(t, { env: { WRITES_ENABLED: 'true', RATE_LIMIT_UNAUTH_MAX: '100000' } })
    const owner = await gw.key({ accountId: 'acct_owner' })
    const foreignId = await gw.studio('acct_owner')
    await crossAccountIsMissing(t, gw, foreignId, async () =>
      (await gw.app.inject({ url: `/v1/studios/${foreignId}/stream`, headers: bearer(owner.secret) })).json(),
    )
  })
  t.test('on the upstream studio service', async (t) => {
    const upstream = await startReferenceUpstream()
    t.teardown(() => upstream.close())
    const gw = await startGateway(t, {
      env: { WRITES_ENABLED: 'true', UPSTREAM_URL: upstream.url, RATE_LIMIT_UNAUTH_MAX: '100000' },
    })
    const owner = await gw.key({ accountId: 'acct_owner' })
    const foreignId = upstream.addStudio('acct_owner', 'Theirs').id
    await crossAccountIsMissing(t, gw, foreignId, async () =>
      (await gw.app.inject({ url: `/v1/studios/${foreignId}/stream`, headers: bearer(owner.secret) })).json(),
    )
  })
})

t.test('a key sent in the URL reaches no log, in any percent-encoding', async (t) => {
  const gw = await startGateway(t)
  const { secret } = await gw.key()
  const body = secret.slice('sk_live_'.length)
  const once = (text: string) => text.replaceAll('_', '%5F')
  const everyChar = (text: string) => [...text].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join('')
  const spellings = [
    secret,
    once(secret),
    once(secret).replaceAll('%', '%25'),
    `sk%5flive%5f${body}`,
    everyChar(secret),
  ]
  for (const spelling of spellings) {
    for (const url of [
      `/v1/studios?key=${spelling}`,
      `/v1/studios/${spelling}`,
      `/nowhere/${spelling}?api_key=${spelling}`,
    ]) {
      const res = await gw.app.inject({ url, headers: bearer(secret) })
      t.notOk(res.body.includes(body), `the answer does not echo it: ${url.slice(0, 40)}`)
    }
  }
  const logged = gw.logText()
  t.notOk(logged.includes(body), 'no log line holds the key, however it was encoded')
  t.ok(
    gw.logs.filter((line) => line.msg === 'request completed').length >= spellings.length * 3,
    'the requests were logged',
  )
})

t.test('a request id cannot inject log lines or headers', async (t) => {
  const gw = await startGateway(t)
  const { secret } = await gw.key()
  const hostile = [
    'ok\n{"level":60,"msg":"forged","requestId":"x"}',
    'ok\r\nX-Injected: 1',
    'ok\rSet-Cookie: a=b',
    '%0d%0aX-Injected:%201',
    'ok\u2028forged',
    'ok\0nul',
    'a'.repeat(129),
    `${'a'.repeat(10)}\t`,
  ]
  for (const id of hostile) {
    for (const headers of [{ 'x-request-id': id }, { ...bearer(secret), 'x-request-id': id }]) {
      const res = await gw.app.inject({ url: '/v1/studios', headers })
      t.match(res.headers['x-request-id'], /^req_[0-9a-f]{16}$/, 'replaced by a generated id')
      t.notOk(res.headers['x-injected'] ?? res.headers['set-cookie'], 'no header injected')
    }
  }
  const lines = gw
    .logText()
    .split('\n')
    .filter((line) => line !== '')
  t.equal(lines.length, hostile.length * 2, 'one log line per request, none forged')
  for (const line of lines) {
    const entry = JSON.parse(line) as { requestId: string; msg: string }
    t.match(entry.requestId, /^req_[0-9a-f]{16}$/)
    t.not(entry.msg, 'forged')
  }
  const echoed = await gw.app.inject({ url: '/v1/studios', headers: { 'x-request-id': 'trace-1.2:3_4-5' } })
  t.equal(echoed.headers['x-request-id'], 'trace-1.2:3_4-5', 'a safe id is echoed as sent')
})

/** What an error message must never show (control characters aside): stack frames, paths, SQL, hosts. */
const INTERNAL = [
  /\bat .+:\d+:\d+/,
  /node_modules|\/work\/|\.ts\b|\.js\b/,
  /select |insert |sqlite|postgres|kysely|SQLITE_|ECONN/i,
  /127\.0\.0\.1|localhost/,
  /hunter2/,
]

const hasControlCharacter = (text: string) => [...text].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)

t.test('error messages never echo raw input unescaped, nor internal details', async (t) => {
  const gw = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
  const { secret } = await gw.key()
  const studioId = await gw.studio('acct_test')
  const raw = '<script>"\u0007\n'
  const requests: InjectOptions[] = [
    { url: `/v1/studios?${encodeURIComponent(raw)}=1`, headers: bearer(secret) },
    { url: `/v1/studios?limit=${encodeURIComponent(raw)}`, headers: bearer(secret) },
    { url: `/v1/studios?cursor=${encodeURIComponent(raw)}`, headers: bearer(secret) },
    { url: `/v1/${encodeURIComponent(raw)}${'x'.repeat(500)}`, headers: bearer(secret) },
    { url: `/v1/studios/${encodeURIComponent(raw)}`, headers: bearer(secret) },
    {
      method: 'POST',
      url: `/v1/studios/${studioId}/stream/go-live`,
      headers: { ...bearer(secret), 'content-type': 'application/json' },
      payload: JSON.stringify({ [raw + 'y'.repeat(300)]: 1 }),
    },
    {
      method: 'POST',
      url: `/v1/studios/${studioId}/stream/go-live`,
      headers: { ...bearer(secret), 'content-type': 'application/json' },
      payload: `{"title": ${JSON.stringify(raw)}`,
    },
    {
      method: 'POST',
      url: `/v1/studios/${studioId}/stream/go-live`,
      headers: { ...bearer(secret), 'content-type': raw },
      payload: 'x',
    },
    { url: '/v1/studios', headers: { authorization: `Bearer ${raw}` } },
    { url: '/v1/studios', headers: { authorization: `Bearer ${secret}`, 'x-api-key': raw } },
    {
      method: 'POST',
      url: `/v1/studios/${studioId}/stream/go-live`,
      headers: { ...bearer(secret), 'idempotency-key': raw },
    },
  ]
  for (const request of requests) {
    const res = await gw.app.inject(request)
    t.ok(res.statusCode >= 400 && res.statusCode < 500, `${request.url}: a client error`)
    const { message } = errorOf(t, res)
    t.ok(message.length <= 300, 'the message is bounded')
    t.notOk(message.includes('<script>"'), 'raw input is not echoed as sent')
    t.notOk(hasControlCharacter(message), 'no control character')
    for (const pattern of INTERNAL) t.notMatch(message, pattern, `no ${pattern}`)
  }

  const leaky = new Error(
    'select * from api_keys where hash = $1: connect ECONNREFUSED 127.0.0.1:5432 password=hunter2',
  )
  const broken = await startGateway(t, {
    keys: (store) => ({ ...store.keys, findByHash: async () => Promise.reject(leaky) }),
    studios: (store) => ({ ...store.studios, getStudio: async () => Promise.reject(leaky) }),
  })
  const res = await broken.app.inject({ url: '/v1/key', headers: bearer(secret) })
  t.ok(res.statusCode >= 500)
  const { message } = errorOf(t, res)
  for (const pattern of INTERNAL) t.notMatch(message, pattern, `a dependency's error stays in the log: no ${pattern}`)
  t.notOk(res.body.includes('hunter2'))
})
