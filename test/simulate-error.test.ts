import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { type ErrorCode, errorCatalog, errorCodes } from '../lib/errors.js'
import { bearer, errorOf, startGateway } from './helpers/gateway.js'
import { parseExposition } from './helpers/prometheus.js'

interface Operation {
  readonly method: string
  readonly path: string
  readonly scope: string | null
  readonly codes: ErrorCode[]
  readonly simulable: ErrorCode[]
}

/** Every /v1 operation of the published document, with the codes its error responses declare. */
function operationsOf(document: { paths: Record<string, Record<string, Record<string, unknown>>> }): Operation[] {
  const operations: Operation[] = []
  for (const [path, item] of Object.entries(document.paths)) {
    if (!path.startsWith('/v1/')) continue
    for (const [method, operation] of Object.entries(item)) {
      const responses = operation.responses as Record<string, { content?: Record<string, { examples?: object }> }>
      const codes = Object.values(responses).flatMap((response) =>
        Object.keys(response.content?.['application/json']?.examples ?? {}),
      ) as ErrorCode[]
      const parameters = operation.parameters as { name?: string; schema?: { enum?: ErrorCode[] } }[]
      const simulable = parameters.find((p) => p.name === 'Simulate-Error')?.schema?.enum ?? []
      operations.push({
        method: method.toUpperCase(),
        path,
        scope: operation['x-required-scope'] as string | null,
        codes,
        simulable,
      })
    }
  }
  return operations
}

/** An answer without what differs from one request to the next: its id, date, and budget counts. */
function comparable(res: LightMyRequestResponse, drop: readonly string[] = []) {
  const { 'x-request-id': id, date: _date, ...headers } = res.headers
  for (const name of Object.keys(headers)) {
    if (name.startsWith('ratelimit') || drop.includes(name)) delete headers[name]
  }
  return { status: res.statusCode, headers, body: res.body.replace(String(id), '<id>') }
}

t.test('Simulate-Error', async (t) => {
  const gw = await startGateway(t)
  const test = await gw.key({ accountId: 'acct_sim', mode: 'test' })
  const live = await gw.key({ accountId: 'acct_sim' })
  const readOnly = await gw.key({ accountId: 'acct_sim', mode: 'test', scopes: ['studio:read'] })
  const studioId = await gw.studio('acct_sim', 'Sandbox', 'test')
  const document = (await gw.app.inject({ url: '/openapi.json' })).json()
  const operations = operationsOf(document)
  t.ok(operations.length >= 7, 'every /v1 operation of the document')
  const call = (operation: Operation, secret: string, headers: Record<string, string> = {}, studio = studioId) =>
    gw.app.inject({
      method: operation.method as InjectOptions['method'],
      url: operation.path.replace('{studioId}', studio).replace('{keyId}', test.id),
      headers: { ...bearer(secret), ...headers },
    })

  t.test('every code of the catalog, on every operation that declares it, answered as the real one', async (t) => {
    const simulated = new Set<ErrorCode>()
    for (const operation of operations) {
      const name = `${operation.method} ${operation.path}`
      t.same(
        [...operation.simulable].sort(),
        [...new Set(operation.codes)].sort(),
        `${name}: the header lists its codes`,
      )
      for (const code of operation.codes) {
        const res = await call(operation, test.secret, { 'simulate-error': code })
        t.equal(res.statusCode, errorCatalog[code].status, `${name} ${code}: status`)
        const error = errorOf(t, res)
        t.equal(error.code, code, `${name} ${code}: code`)
        t.equal(res.headers['cache-control'], 'no-store')
        if (operation.scope)
          t.equal(res.headers['x-accepted-scopes'], operation.scope, `${name} ${code}: X-Accepted-Scopes`)
        t.equal(res.headers['retry-after'], code === 'rate_limited' || code === 'unavailable' ? '1' : undefined)
        t.equal(res.headers['www-authenticate'], code === 'invalid_key' ? 'Bearer realm="studio-gateway"' : undefined)
        t.equal(error.requiredScope, code === 'insufficient_scope' ? (operation.scope as string) : undefined)
        t.equal(res.headers['x-key-scopes'] === undefined, code === 'invalid_key', `${name} ${code}: X-Key-Scopes`)
        if (code === 'rate_limited') t.match(res.headers.ratelimit, /;r=0;t=1$/, 'the budget shown spent')
        simulated.add(code)
      }
      // A code the operation cannot answer is refused, naming the ones it can.
      for (const code of errorCodes.filter((c) => !operation.codes.includes(c))) {
        const res = await call(operation, test.secret, { 'simulate-error': code })
        t.equal(res.statusCode, 400, `${name}: ${code} is not one of its codes`)
        const error = errorOf(t, res)
        t.equal(error.code, 'invalid_request')
        for (const allowed of operation.codes) t.match(error.message, allowed)
      }
    }
    t.same([...simulated].sort(), [...errorCodes].sort(), 'every code of the catalog was simulated somewhere')
    t.same(
      gw.logs.filter((line) => (line.level as number) >= 40),
      [],
      'a simulated error is not logged as a fault',
    )
    const metrics = parseExposition((await gw.app.inject({ url: '/metrics' })).body)
    for (const code of ['internal', 'bad_gateway', 'unavailable'] as const) {
      t.ok((metrics.value('studio_gateway_simulated_errors_total', { code }) ?? 0) > 0, `${code} counted as simulated`)
      t.equal(metrics.value('studio_gateway_errors_total', { code }), 0, `${code} is not counted as a real error`)
    }
    const realUnknownKey = await gw.app.inject({ url: '/v1/key', headers: bearer(`sk_test_${'A'.repeat(38)}`) })
    t.equal(realUnknownKey.statusCode, 401)
    const after = parseExposition((await gw.app.inject({ url: '/metrics' })).body)
    t.equal(after.value('studio_gateway_errors_total', { code: 'invalid_key' }), 1, 'a real refusal still counts')
  })

  t.test('a simulated answer equals the real one, byte for byte apart from the request id', async (t) => {
    const getStudio = operations.find((o) => o.path === '/v1/studios/{studioId}' && o.method === 'GET') as Operation
    const goLive = operations.find((o) => o.path.endsWith('/go-live')) as Operation
    // not_found: a studio that is not there.
    t.same(
      comparable(await call(getStudio, test.secret, { 'simulate-error': 'not_found' })),
      comparable(await call(getStudio, test.secret, {}, 'std_NotThereAtAll01')),
    )
    // insufficient_scope: a key without the route's scope (its X-Key-Scopes differs, as the key does).
    t.same(
      comparable(await call(goLive, test.secret, { 'simulate-error': 'insufficient_scope' }), ['x-key-scopes']),
      comparable(await call(goLive, readOnly.secret), ['x-key-scopes']),
    )
    // write_disabled: a live key while the write surface is gated.
    t.same(
      comparable(await call(goLive, test.secret, { 'simulate-error': 'write_disabled' })),
      comparable(await call(goLive, live.secret)),
    )
    // not_found of a key: a key that is not there.
    const getKeyById = operations.find((o) => o.path === '/v1/keys/{keyId}') as Operation
    t.same(
      comparable(await call(getKeyById, test.secret, { 'simulate-error': 'not_found' })),
      comparable(await gw.app.inject({ url: '/v1/keys/key_NotThereAtAll0', headers: bearer(test.secret) })),
    )
    // invalid_key: a well-formed key that is not known.
    t.same(
      comparable(await call(getStudio, test.secret, { 'simulate-error': 'invalid_key' })),
      comparable(await call(getStudio, live.secret.replace('sk_live_', 'sk_test_'))),
    )
  })

  t.test('simulations spend nothing and store nothing', async (t) => {
    const getKey = operations.find((o) => o.path === '/v1/key') as Operation
    const before = await call(getKey, test.secret, { 'simulate-error': 'invalid_key' })
    const after = await call(getKey, test.secret, { 'simulate-error': 'invalid_key' })
    t.equal(after.headers['ratelimit-remaining'], before.headers['ratelimit-remaining'], 'no failure budget spent')
    for (let i = 0; i < 3; i++) await call(getKey, test.secret, { 'simulate-error': 'rate_limited' })
    t.equal((await call(getKey, test.secret)).statusCode, 200, 'a simulated 429 leaves the key its budget')

    const goLive = operations.find((o) => o.path.endsWith('/go-live')) as Operation
    const idempotency = { 'idempotency-key': 'sim-1' }
    const failed = await call(goLive, test.secret, { ...idempotency, 'simulate-error': 'unavailable' })
    t.equal(failed.statusCode, 503)
    const retried = await call(goLive, test.secret, idempotency)
    t.equal(retried.statusCode, 200, 'the retry runs: a simulated answer is not stored for replay')
    t.equal(retried.headers['idempotent-replayed'], undefined)
    t.equal(retried.json().status, 'live')
  })

  t.test('a live key sending the headers is refused, never ignored', async (t) => {
    for (const operation of operations) {
      const sent: Record<string, string>[] = [{ 'simulate-error': 'internal' }, { 'simulate-latency': '10' }]
      for (const headers of sent) {
        const res = await call(operation, live.secret, headers)
        t.equal(res.statusCode, 400, `${operation.method} ${operation.path} ${Object.keys(headers)[0]}`)
        const error = errorOf(t, res)
        t.equal(error.code, 'invalid_request')
        t.match(error.message, /test key/)
      }
    }
  })

  t.test('Simulate-Latency: a bounded whole number of milliseconds', async (t) => {
    const getKey = operations.find((o) => o.path === '/v1/key') as Operation
    t.equal((await call(getKey, test.secret, { 'simulate-latency': '20' })).statusCode, 200)
    const delayed = await call(getKey, test.secret, { 'simulate-latency': '20', 'simulate-error': 'internal' })
    t.equal(delayed.statusCode, 500)
    t.equal(errorOf(t, delayed).code, 'internal')
    for (const value of ['10001', '-1', 'abc', '1.5', '99999999', '']) {
      const res = await call(getKey, test.secret, { 'simulate-latency': value })
      t.equal(res.statusCode, 400, JSON.stringify(value))
      t.match(errorOf(t, res).message, /Simulate-Latency/)
    }
  })

  t.test('an unknown value is refused, and never echoed', async (t) => {
    const getKey = operations.find((o) => o.path === '/v1/key') as Operation
    for (const value of ['teapot', 'NOT_FOUND', 'internal, internal', test.secret]) {
      const res = await call(getKey, test.secret, { 'simulate-error': value })
      t.equal(res.statusCode, 400)
      t.notOk(res.body.includes(value), 'the value is not echoed')
    }
  })
})
