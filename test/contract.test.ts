import type { InjectOptions } from 'fastify'
import t from 'tap'
import { ApiError, badGateway, type ErrorCode, notFound, writeDisabled } from '../lib/errors.js'
import type { StudioService } from '../stores/types.js'
import { contract } from './helpers/contract.js'
import { failingStudios, keyStoreCorrupt, keyStoreDown } from './helpers/failing-stores.js'
import { allScopes, bearer, type GatewayOptions, startGateway, type TestGateway } from './helpers/gateway.js'

/**
 * Every operation of openapi.yaml × every status it declares × every code that status can carry,
 * each produced through the real HTTP stack and checked against the file. A status or code the
 * document declares without a way to produce it here fails the suite, so the two cannot drift.
 */

type Json = Record<string, unknown>
type Operation = ReturnType<typeof contract>['operations'][number]

/** The gateways the scenarios need, each built once. */
const gatewayKinds = {
  writesOn: { env: { WRITES_ENABLED: 'true' } },
  writesOff: {},
  keyStoreDown: { keys: keyStoreDown },
  keyStoreCorrupt: { keys: keyStoreCorrupt },
  upstreamBroken: {
    env: { WRITES_ENABLED: 'true' },
    studios: (store) => failingStudios(() => badGateway('the studio service answered 502'))(store.studios),
  },
  rateLimitOfOne: { env: { WRITES_ENABLED: 'true', RATE_LIMIT_MAX: '1' } },
} satisfies Record<string, GatewayOptions>

type Kind = keyof typeof gatewayKinds

interface Context {
  gw: TestGateway
  secret: string
  /** The id in the operation's path: a studio, or a key made for this request (key routes). */
  studioId: string
}

interface Scenario {
  kind: Kind
  /** The request that earns the outcome; `send` is the request of the operation with defaults. */
  run(send: (overrides?: Partial<Sent>) => Promise<Answer>, context: Context, operation: Operation): Promise<Answer>
}

interface Sent {
  url: string
  headers: Record<string, string>
}
type Answer = Awaited<ReturnType<TestGateway['app']['inject']>>

const scenarios: Record<ErrorCode | 'success', Scenario> = {
  success: { kind: 'writesOn', run: (send) => send() },
  invalid_request: {
    kind: 'writesOn',
    run: (send, { studioId }, op) => send({ url: `${urlOf(op, studioId)}?colour=red` }),
  },
  invalid_key: { kind: 'writesOn', run: (send) => send({ headers: {} }) },
  insufficient_scope: {
    kind: 'writesOn',
    run: async (send, { gw }, op) => {
      const lacking = await gw.key({ scopes: allScopes.filter((scope) => scope !== op.object['x-required-scope']) })
      return send({ headers: bearer(lacking.secret) })
    },
  },
  not_found: { kind: 'writesOn', run: (send, _context, op) => send({ url: urlOf(op, 'std_doesNotExist') }) },
  rate_limited: {
    kind: 'rateLimitOfOne',
    run: async (send) => {
      await send()
      return send()
    },
  },
  write_disabled: { kind: 'writesOff', run: (send) => send() },
  unavailable: { kind: 'keyStoreDown', run: (send) => send() },
  bad_gateway: { kind: 'upstreamBroken', run: (send) => send() },
  internal: { kind: 'keyStoreCorrupt', run: (send) => send() },
}

const urlOf = (op: Operation, id: string) => op.template.replace('{studioId}', id).replace('{keyId}', id)

/** The body an operation needs to succeed (the others take none, or an optional one). */
const bodies: Record<string, object> = { createKey: { name: 'contract', scopes: ['studio:read'] } }

/** The codes an error response of the document lists (its enum), or `success` for a 2xx. */
function outcomesOf(response: Json): Array<ErrorCode | 'success'> {
  const schema = (response.content as Json | undefined)?.['application/json'] as Json | undefined
  const narrowing = ((schema?.schema as Json | undefined)?.allOf as Json[] | undefined)?.[1]
  const code = ((narrowing?.properties as Json | undefined)?.error as Json | undefined)?.properties as Json | undefined
  return ((code?.code as Json | undefined)?.enum as ErrorCode[] | undefined) ?? ['success']
}

t.test('every operation × every declared status × every code answers as openapi.yaml says', async (t) => {
  const gateways = new Map<Kind, Context>()
  const contextOf = async (kind: Kind): Promise<Context> => {
    let context = gateways.get(kind)
    if (!context) {
      const gw = await startGateway(t, gatewayKinds[kind] as GatewayOptions)
      context = { gw, secret: (await gw.key()).secret, studioId: await gw.studio('acct_test') }
      gateways.set(kind, context)
    }
    return context
  }

  const { operations, check } = contract()
  t.ok(operations.length >= 7, 'the document describes the operations')
  for (const op of operations) {
    const responses = op.object.responses as Record<string, Json>
    for (const [status, response] of Object.entries(responses)) {
      for (const outcome of outcomesOf(response)) {
        const label = `${op.object.operationId} → ${status} ${outcome}`
        const scenario = scenarios[outcome]
        if (!scenario) {
          t.fail(`${label}: no scenario produces it`)
          continue
        }
        const shared = await contextOf(scenario.kind)
        // Key routes act on a key of their own: rolling or revoking it leaves the caller's alone.
        const context = op.template.includes('{keyId}') ? { ...shared, studioId: (await shared.gw.key()).id } : shared
        const body = bodies[String(op.object.operationId)]
        const send = (overrides: Partial<Sent> = {}) =>
          context.gw.app.inject({
            method: op.method.toUpperCase() as InjectOptions['method'],
            url: overrides.url ?? urlOf(op, context.studioId),
            headers: overrides.headers ?? bearer(context.secret),
            ...(body === undefined ? {} : { payload: body }),
          })
        const answer = await scenario.run(send, context, op)
        t.equal(String(answer.statusCode), status, label)
        if (outcome !== 'success') t.equal(answer.json().error.code, outcome, `${label}: the code`)
        t.same(check({ ...answer, method: op.method, url: urlOf(op, context.studioId), body: answer.body }), [], label)
      }
    }
  }
})

t.test('a response the document does not describe is a violation', async (t) => {
  const violations: string[] = []
  const drifted = (studios: StudioService): StudioService => ({
    ...studios,
    // A body whose timestamp is not RFC 3339.
    getStudio: async () => ({ id: 'std_x', name: 'X', createdAt: 'yesterday' }),
    // A status the operation does not declare (listStudios has no 404).
    listStudios: async () => {
      throw notFound('gone')
    },
    // A code its status does not list (getStream's 503 is only `unavailable`).
    getStream: async () => {
      throw writeDisabled()
    },
    // A declared status without its required header (Retry-After on 503 unavailable).
    listSessions: async () => {
      throw new ApiError('unavailable', 'down')
    },
  })
  const gw = await startGateway(t, {
    studios: (store) => drifted(store.studios),
    onContractViolation: (v) => violations.push(v),
  })
  const headers = bearer((await gw.key()).secret)
  for (const url of ['/v1/studios/std_x', '/v1/studios', '/v1/studios/std_x/stream', '/v1/studios/std_x/sessions']) {
    await gw.app.inject({ url, headers })
  }
  await gw.app.inject({ method: 'PUT', url: '/v1/key', headers })
  t.match(violations, [
    /GET \/v1\/studios\/\{studioId\} → 200: body does not match the schema: \/createdAt must match format "date-time"/,
    /GET \/v1\/studios does not declare status 404/,
    /GET \/v1\/studios\/\{studioId\}\/stream → 503: missing the required header Retry-After/,
    /GET \/v1\/studios\/\{studioId\}\/stream → 503: body does not match the schema: \/error\/code must be equal to one of the allowed values/,
    /GET \/v1\/studios\/\{studioId\}\/sessions → 503: missing the required header Retry-After/,
  ])
  t.equal(violations.length, 5, 'the wrong method on a known path is the documented 404, not a violation')

  const { check } = contract()
  const ok = await gw.app.inject({ url: '/v1/key', headers })
  t.same(check({ ...ok, method: 'GET', url: '/v1/key', body: ok.body }), [], 'the real answer conforms')
  t.match(check({ ...ok, statusCode: 418, method: 'GET', url: '/v1/key', body: ok.body }), [
    /does not declare status 418/,
  ])
  const { 'x-request-id': _, ...withoutId } = ok.headers
  t.match(check({ ...ok, headers: withoutId, method: 'GET', url: '/v1/key', body: ok.body }), [
    /no X-Request-Id header/,
    /missing the required header X-Request-Id/,
  ])
  t.match(check({ ...ok, method: 'GET', url: '/v1/key', body: '{"id":"key_x"}' }), [/must have required property/])
  t.match(check({ ...ok, statusCode: 500, method: 'GET', url: '/v1/nowhere', body: '{}' }), [
    /not described.*only 404 not_found/,
  ])
  const { 'ratelimit-remaining': __, ...withoutBudget } = ok.headers
  t.match(check({ ...ok, headers: withoutBudget, method: 'GET', url: '/v1/key', body: ok.body }), [
    /missing the required header RateLimit-Remaining/,
  ])
})
