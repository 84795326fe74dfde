import fc from 'fast-check'
import type { Test } from 'tap'
import { startReferenceUpstream } from '../../examples/reference-upstream.js'
import { errorCodes } from '../../lib/errors.js'
import { startGateway, type TestGateway } from './gateway.js'

/**
 * Property-based fuzzing of the whole HTTP surface (fast-check): random methods, paths, query
 * strings, headers and bodies, sent through `app.inject` to real gateways, and what every answer
 * must be whatever was sent. Used by test/fuzz.test.ts (a quick run in `npm test`) and by
 * `npm run fuzz` (FUZZ_RUNS=100000).
 */

/** What the fuzzer sends. `headers` values are any strings: inject, unlike Node's parser, lets every byte through. */
export interface FuzzRequest {
  readonly gateway: number
  readonly method: string
  readonly url: string
  readonly headers: Record<string, string>
  readonly body: string | undefined
}

/** The gateways under fuzz and the secrets, ids and studios their requests are built from. */
export interface FuzzTarget {
  readonly gateways: TestGateway[]
  readonly secrets: string[]
  readonly studioIds: string[]
}

/**
 * Three gateways on one store (writes on; writes off; studios from the reference upstream
 * studio service, with the same studios), with keys of every kind: every scope, one
 * scope, a key with a budget of 3 requests (so rate_limited answers come too), an expired and a
 * revoked key, and a key of another account whose studio the others must not see.
 */
export async function startFuzzTargets(t: Test, violations: string[]): Promise<FuzzTarget> {
  // The key budgets are the keys' own; the client IP's failure budget must not turn every
  // unauthenticated answer into a 429 after the first 60.
  const env = { RATE_LIMIT_MAX: '1000000000', RATE_LIMIT_UNAUTH_MAX: '1000000000', LOG_LEVEL: 'info' }
  // Contract violations are collected per request instead of failing the test one by one.
  const onContractViolation = (violation: string) => violations.push(violation)
  const writes = await startGateway(t, { env: { ...env, WRITES_ENABLED: 'true' }, onContractViolation })
  const gated = await startGateway(t, { env, storeEnv: writes.storeEnv, onContractViolation })
  const all = ['studio:read', 'stream:read', 'stream:golive'] as const
  const keys = await Promise.all([
    writes.key({ accountId: 'acct_fuzz', scopes: all }),
    writes.key({ accountId: 'acct_fuzz', scopes: ['stream:read'] }),
    writes.key({ accountId: 'acct_fuzz', scopes: all, rateLimits: [{ max: 3, windowMs: 3_600_000 }] }),
    writes.key({ accountId: 'acct_fuzz', scopes: all, expiresAt: '2020-01-01T00:00:00.000Z' }),
    writes.key({ accountId: 'acct_fuzz', scopes: all }),
    writes.key({ accountId: 'acct_other', scopes: all }),
  ])
  await writes.store.keys.revoke(keys[4]?.id ?? '', new Date().toISOString())
  const studioIds = [
    await writes.studio('acct_fuzz', 'Main'),
    await writes.studio('acct_fuzz', 'Second'),
    await writes.studio('acct_other', 'Not yours'),
  ]
  const upstream = await startReferenceUpstream()
  t.teardown(() => upstream.close())
  for (const [i, id] of studioIds.entries()) upstream.addStudio(i === 2 ? 'acct_other' : 'acct_fuzz', `Studio ${i}`, id)
  const upstreamMode = await startGateway(t, {
    env: { ...env, WRITES_ENABLED: 'true', UPSTREAM_URL: upstream.url },
    storeEnv: writes.storeEnv,
    onContractViolation,
  })
  return { gateways: [writes, gated, upstreamMode], secrets: keys.map((k) => k.secret), studioIds }
}

const hostileText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({
    unit: fc.constantFrom('\0', '\r', '\n', '\t', '\x7f', '\u2028', '"', '\\', '<', '%', '/'),
    maxLength: 20,
  }),
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'sk_live_', '%00', '%zz', '..', '%2e%2e', '', ' '),
  // Up to what fits in the 16 KiB Node's parser lets through (request line and headers).
  fc.integer({ min: 200, max: 15_000 }).map((n) => 'x'.repeat(n)),
)

export function fuzzRequests(target: FuzzTarget): fc.Arbitrary<FuzzRequest> {
  const { secrets, studioIds } = target
  const secret = fc.constantFrom(...secrets)
  const studioId = fc.oneof(fc.constantFrom(...studioIds), hostileText.map(encodeURIComponent), hostileText)

  const path = fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .tuple(studioId, fc.constantFrom('', '/stream', '/sessions', '/stream/go-live', '/stream/go-offline'))
        .map(([id, rest]) => `/v1/studios/${id}${rest}`),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        '/v1/studios',
        '/v1/key',
        '/v1',
        '/v1/',
        '/v2/studios',
        '/healthz',
        '/readyz',
        '/openapi.json',
        '/metrics',
        '/',
        '//v1/studios',
        '/v1/studios/',
      ),
    },
    { weight: 2, arbitrary: fc.array(hostileText, { maxLength: 4 }).map((parts) => `/${parts.join('/')}`) },
  )
  const queryValue = fc.oneof(
    fc.constantFrom('20', '0', '101', '-1', '1e3', 'abc', '', '1.5', '100'),
    hostileText.map(encodeURIComponent),
    hostileText,
  )
  const query = fc
    .array(fc.tuple(fc.constantFrom('limit', 'cursor', '__proto__', 'colour', 'limit[]', 'constructor'), queryValue), {
      maxLength: 4,
    })
    .map((pairs) => (pairs.length === 0 ? '' : `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`))

  const credential = fc.oneof(
    secret,
    secret.map((s) => `${s.slice(0, -1)}${s.endsWith('a') ? 'b' : 'a'}`),
    fc.string({ minLength: 32, maxLength: 32, unit: fc.constantFrom(...'abcXYZ019') }).map((s) => `sk_live_${s}abcdef`),
    hostileText,
  )
  const authorization = fc.oneof(
    credential.map((c) => `Bearer ${c}`),
    credential.map((c) => `Basic ${c}`),
    credential,
  )
  const optional = <T>(arbitrary: fc.Arbitrary<T>) => fc.option(arbitrary, { nil: undefined, freq: 3 })
  const headers = fc
    .record({
      authorization: optional(authorization),
      'x-api-key': optional(credential),
      'x-request-id': optional(fc.oneof(fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/), hostileText)),
      'content-type': optional(
        fc.oneof(
          fc.constantFrom(
            'application/json',
            'application/json; charset=utf-8',
            'text/plain',
            'application/x-www-form-urlencoded',
            'multipart/form-data; boundary=x',
            'application/json, text/plain',
          ),
          hostileText,
        ),
      ),
      'idempotency-key': optional(fc.oneof(fc.uuid(), hostileText)),
      accept: optional(fc.constantFrom('application/json', '*/*', 'text/html', 'application/yaml')),
    })
    .map(
      (record) =>
        Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined)) as Record<string, string>,
    )

  const jsonValue = fc.jsonValue({ maxDepth: 4 })
  const body = fc.oneof(
    fc.constant(undefined),
    fc.constantFrom('', '{}', 'null', '[]', '{"title":"Live"}', '{"title":5}', '{"title":""}', '{"title":null}'),
    fc.constantFrom('{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}', '{"title":"a","title":"b"}'),
    fc.record({ title: fc.oneof(fc.string({ maxLength: 200 }), jsonValue) }).map((b) => JSON.stringify(b)),
    jsonValue.map((v) => JSON.stringify(v)),
    fc.integer({ min: 1, max: 40_000 }).map((depth) => `${'['.repeat(depth)}${']'.repeat(depth)}`),
    fc.integer({ min: 1, max: 100_000 }).map((n) => JSON.stringify({ title: 'x'.repeat(n) })),
    hostileText,
  )
  return fc.record({
    gateway: fc.nat({ max: target.gateways.length - 1 }),
    method: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD', 'PROPFIND', 'TRACE'),
    url: fc.tuple(path, query).map(([p, q]) => injectable(p + q)),
    headers,
    body,
  })
}

/**
 * inject parses the URL itself (WHATWG) and throws on what it cannot parse (`/\\`), where a
 * socket would carry the bytes: those are sent percent-encoded instead. Request lines Node's
 * parser refuses are the raw-socket tests' business (test/errors.test.ts).
 */
function injectable(url: string): string {
  return URL.canParse(url, 'http://localhost') && !url.startsWith('//') ? url : encodeURI(url).replace(/^\/+/, '/')
}

const STATUSES = new Set([200, 400, 401, 403, 404, 429, 502, 503])
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/
const OUTSIDE_V1 = /^\/(docs|openapi\.(json|yaml)|healthz|readyz|metrics)(\/|\?|$)/

/** A promise that rejects when `promise` takes longer than `ms`: a hang is a failure too. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms: ${what}`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Sends one request and lists what is wrong with the answer: a status outside the spec's table,
 * a 500, an error that is not the envelope with a catalog code and its request id, a missing or
 * unsafe X-Request-Id, a raw secret in the answer, a contract violation, or no answer at all.
 */
export async function problemsOf(target: FuzzTarget, request: FuzzRequest, violations: string[]): Promise<string[]> {
  const gw = target.gateways[request.gateway] as TestGateway
  violations.length = 0
  const response = await within(
    gw.app.inject({
      method: request.method as 'GET',
      url: request.url,
      headers: request.headers,
      ...(request.body === undefined ? {} : { payload: request.body }),
    }),
    10_000,
    `${request.method} ${request.url.slice(0, 80)}`,
  )
  const problems = [...violations]
  const requestId = response.headers['x-request-id']
  if (typeof requestId !== 'string' || !SAFE_REQUEST_ID.test(requestId) || requestId.includes('sk_live_')) {
    problems.push(`unsafe or missing X-Request-Id: ${JSON.stringify(requestId)}`)
  }
  for (const [name, value] of Object.entries(response.headers)) {
    if (/[\r\n\0]/.test(String(value))) problems.push(`header ${name} holds a control character`)
  }
  if (!STATUSES.has(response.statusCode)) problems.push(`status ${response.statusCode} is not in the spec's table`)
  for (const secret of target.secrets) {
    if (response.body.includes(secret)) problems.push('a key secret is in the body')
  }
  const path = request.url.startsWith('/') ? request.url : `/${request.url}`
  if (response.statusCode >= 400 && request.method !== 'HEAD') {
    let body: { error?: { code?: unknown; requestId?: unknown; message?: unknown } } | undefined
    try {
      body = response.json()
    } catch {
      problems.push(`a ${response.statusCode} whose body is not JSON`)
    }
    const error = body?.error
    if (!error || !errorCodes.includes(error.code as never) || typeof error.message !== 'string') {
      problems.push(`a ${response.statusCode} that is not the envelope: ${response.body.slice(0, 200)}`)
    } else if (error.requestId !== requestId) {
      problems.push('error.requestId differs from X-Request-Id')
    }
  } else if (response.statusCode === 200 && !OUTSIDE_V1.test(path) && request.method !== 'HEAD') {
    // A /v1 success is JSON of a declared shape (the contract check above checked which).
    try {
      response.json()
    } catch {
      problems.push('a 200 whose body is not JSON')
    }
  }
  return problems
}

/** Long strings cut short, so that a counterexample reads in a report. */
function abbreviated(value: unknown): unknown {
  if (typeof value === 'string') return value.length > 120 ? `${value.slice(0, 80)}…(${value.length} chars)` : value
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, abbreviated(v)]))
}

/**
 * Runs `runs` random requests (a failure is shrunk to a smallest counterexample); answers the
 * number of cases that passed, and a report of the failure, if any.
 */
export async function fuzz(t: Test, runs: number, seed?: number) {
  const violations: string[] = []
  const target = await startFuzzTargets(t, violations)
  const property = fc.asyncProperty(fuzzRequests(target), async (request) => {
    const problems = await problemsOf(target, request, violations)
    if (problems.length > 0) throw new Error(problems.join('\n'))
  })
  const details = await fc.check(property, { numRuns: runs, ...(seed === undefined ? {} : { seed }) })
  const failure = details.failed
    ? `${details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)}\n` +
      `counterexample (seed ${details.seed}, path ${details.counterexamplePath}): ${JSON.stringify(abbreviated(details.counterexample?.[0]))}`
    : undefined
  return { target, passed: details.numRuns - (details.failed ? 1 : 0), failure, seed: details.seed }
}
