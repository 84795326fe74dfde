import type { FastifySchema, RouteOptions } from 'fastify'
import { MAX_SIMULATED_LATENCY_MS } from '../pipeline/simulate-error.js'
import { declaredErrorCodes } from '../schemas/error-envelope.js'
import { type Scope, scopes } from './api-keys.js'
import {
  type ApiError,
  badGateway,
  type ErrorCode,
  envelope,
  errorCatalog,
  errorCodes,
  insufficientScope,
  internal,
  invalidRequest,
  keyRefusals,
  rateLimited,
  studioNotFound,
  unavailable,
  writeDisabled,
} from './errors.js'
import { CLIENT_REQUEST_ID_PATTERN } from './ids.js'

/**
 * How the route schemas become the published OpenAPI document. @fastify/swagger turns each route's
 * TypeBox schema into an operation; `describeOperations` (its `transformObject`) then adds what
 * the schemas alone do not say: the scope and security of each operation, the headers of each
 * answer, and for each error status the codes it can carry (an enum) with an example envelope.
 * All of it is documentation only: the schemas the routes serialize with stay as they are.
 */

type Json = Record<string, unknown>

/** The API version the document describes; the package version tracks the implementation. */
export const DOCUMENT_INFO = {
  title: 'Studio Gateway',
  version: '1.0.0',
  summary: 'The public /v1 API of the live-streaming studio platform.',
  license: { name: 'Proprietary', identifier: 'LicenseRef-Proprietary' },
  description: [
    'Call the API with an API key (`sk_live_…`) sent as `Authorization: Bearer sk_live_…` or `X-API-Key: sk_live_…`. Each operation names the scope its key needs: `x-required-scope`, and the role of its security requirement.',
    'Every error, on every path, is one envelope: `{"error": {"code", "message", "requestId", "requiredScope"?}}`. Branch on `error.code`: each error response lists the codes it can carry. Retry only `unavailable`, `bad_gateway` and `internal` (with backoff), and `rate_limited` after `Retry-After`. A path or method not described here answers `404 not_found` in the same envelope (`429 rate_limited` once the client IP has failed too often).',
    'Every response carries `X-Request-Id`; quote it when you ask us to look into a request.',
    "Modes: a live key (`sk_live_…`) sees the live data of its account; a test key (`sk_test_…`) sees only its account's sandbox (other studios, streams and sessions; the other mode's studio answers `404` as a missing one), may go live and offline even while the write surface is gated, has its own rate-limit budget, and may send `Simulate-Error` (and `Simulate-Latency`) on any operation to get that error exactly as the operation answers it for real. The explorer accepts either kind of key.",
  ].join('\n\n'),
}

export const DOCUMENT_TAGS = [
  { name: 'studios', description: 'The studios of your account.' },
  { name: 'stream', description: 'The live stream of a studio: its state, going live and offline, past sessions.' },
  { name: 'keys', description: 'The API key making the call.' },
]

export const SECURITY_SCHEMES = {
  bearerAuth: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'sk_live_… or sk_test_…',
    description: 'The API key as a bearer token: `Authorization: Bearer sk_live_…` (or a test key, `sk_test_…`).',
  },
  apiKeyHeader: {
    type: 'apiKey',
    in: 'header',
    name: 'X-API-Key',
    description: 'The API key in its own header: `X-API-Key: sk_live_…` (or `sk_test_…`).',
  },
} as const

const REQUEST_ID_PARAMETER = {
  name: 'X-Request-Id',
  in: 'header',
  required: false,
  description:
    'Your own id for this request, echoed in the response header and the error envelope when it is 1–128 of `[A-Za-z0-9._:-]`; otherwise the gateway generates one.',
  schema: { type: 'string', pattern: CLIENT_REQUEST_ID_PATTERN },
}

const SIMULATE_LATENCY_PARAMETER = {
  name: 'Simulate-Latency',
  in: 'header',
  required: false,
  description: `Test keys only (\`sk_test_…\`): delays the answer by this many milliseconds, 0–${MAX_SIMULATED_LATENCY_MS}, for timeout tests. A live key sending it gets \`400 invalid_request\`.`,
  schema: { type: 'integer', minimum: 0, maximum: MAX_SIMULATED_LATENCY_MS },
}

/**
 * Simulate-Error, on an operation: its values are the codes the operation declares, since any
 * other is refused (400).
 */
function simulateErrorParameter(facts: OperationFacts): Json {
  const declared = new Set([...facts.errorCodes.values()].flat())
  return {
    name: 'Simulate-Error',
    in: 'header',
    required: false,
    description:
      'Test keys only (`sk_test_…`): once the key and its rate limit are checked, answer this error exactly as this operation answers it for real (status, envelope, headers; `Retry-After: 1` on `rate_limited` and `unavailable`). A code the operation cannot answer is `400 invalid_request`, naming the ones it can; a live key sending the header gets `400 invalid_request`.',
    schema: { type: 'string', enum: errorCodes.filter((code) => declared.has(code)) },
  }
}

const seconds = { type: 'integer', minimum: 0 } as const

/** The response headers of the API, as declared in `components.headers` (where they are required). */
const RESPONSE_HEADERS = {
  'X-Request-Id': {
    description:
      'The id of this request: the one you sent if it was valid, else a generated `req_` + 16 hex. Equals `error.requestId`.',
    schema: { type: 'string', pattern: CLIENT_REQUEST_ID_PATTERN },
  },
  'X-Key-Scopes': {
    description: 'The scopes the calling key holds, comma-separated: see a missing scope before it fails.',
    schema: { type: 'string' },
    example: 'studio:read, stream:read',
  },
  'X-Accepted-Scopes': {
    description: 'The scope this operation needs.',
    schema: { $ref: '#/components/schemas/Scope' },
  },
  'WWW-Authenticate': {
    description: 'The scheme to authenticate with.',
    schema: { type: 'string' },
    example: 'Bearer realm="studio-gateway"',
  },
  'Idempotent-Replayed': {
    description:
      '`true` when this answer is the stored answer of an earlier request with the same `Idempotency-Key`, replayed rather than run again.',
    schema: { type: 'string', enum: ['true'] },
  },
  'Retry-After': { description: 'Seconds to wait before retrying.', schema: seconds },
  'RateLimit-Policy': {
    description:
      'The rate-limit policies of this budget (IETF draft-ietf-httpapi-ratelimit-headers, a structured-field list): each named, with its quota `q` and window `w` in seconds. A key may have several; the strictest decides.',
    schema: { type: 'string' },
    example: '"default";q=600;w=60',
  },
  RateLimit: {
    description:
      'The policy that applied to this request, as a structured-field list item: `r` requests remaining, `t` seconds until more quota is available (on a 429, the exact Retry-After; absent while nothing is used).',
    schema: { type: 'string' },
    example: '"default";r=599;t=60',
  },
  'RateLimit-Limit': {
    description: 'The quota of the policy that applied (the 2021 draft header, kept for existing clients).',
    schema: seconds,
  },
  'RateLimit-Remaining': { description: 'Requests left under the policy that applied.', schema: seconds },
  'RateLimit-Reset': {
    description: 'Seconds until more quota is available (`t` of the RateLimit field; 0 while nothing is used).',
    schema: seconds,
  },
} as const

type HeaderName = keyof typeof RESPONSE_HEADERS

const RATE_LIMIT_HEADERS = [
  'RateLimit-Policy',
  'RateLimit',
  'RateLimit-Limit',
  'RateLimit-Remaining',
  'RateLimit-Reset',
] as const

/**
 * The headers each error code always carries (besides X-Request-Id, on every answer, and
 * X-Accepted-Scopes, on every error of a scoped route): the catalog's, and X-Key-Scopes on the
 * codes only ever raised once the key is verified.
 */
const codeHeaders = (code: ErrorCode): readonly HeaderName[] => {
  const entry = errorCatalog[code]
  return entry.afterKey ? [...entry.headers, 'X-Key-Scopes'] : entry.headers
}

/** An error of each code as the gateway raises it: the source of the example envelopes. */
const EXAMPLE_ERRORS: Record<ErrorCode, (scope: Scope) => ApiError> = {
  invalid_request: () => invalidRequest('unknown querystring parameter "colour"'),
  invalid_key: () => keyRefusals.unknown,
  insufficient_scope: (scope) => insufficientScope(scope),
  not_found: () => studioNotFound(),
  rate_limited: () => rateLimited(12),
  write_disabled: () => writeDisabled(),
  unavailable: () => unavailable('API key verification is temporarily unavailable; retry shortly'),
  bad_gateway: () => badGateway('the upstream studio service answered with an unexpected status; retry with backoff'),
  internal: () => internal(),
}

const EXAMPLE_REQUEST_ID = 'req_9f2c1a7b4e5d6f80'

/** What the document needs to know of a route beyond its schema. */
export interface OperationFacts {
  readonly scope: Scope | undefined
  /** Scopes its 403 may name: the route's own, or any (key management refuses to hand out a scope the key lacks). */
  readonly refusableScopes: readonly Scope[]
  /** Whether the operation needs a key (every /v1 route). */
  readonly authenticated: boolean
  /** A write: takes an Idempotency-Key, and its answers may be replays. */
  readonly write: boolean
  /** Error statuses and the codes each can carry. */
  readonly errorCodes: ReadonlyMap<string, readonly ErrorCode[]>
}

/** Collects the facts of a route as it is added (an `onRoute` hook), keyed by its operationId. */
export function factsOf(route: RouteOptions): [string, OperationFacts] | undefined {
  const schema = route.schema as (FastifySchema & { operationId?: string }) | undefined
  if (schema?.operationId === undefined || route.method === 'HEAD') return undefined
  const errorCodes = declaredErrorCodes(schema.response)
  return [
    schema.operationId,
    {
      scope: route.config?.scope,
      refusableScopes:
        route.config?.grantsScopes === true ? scopes : route.config?.scope === undefined ? [] : [route.config.scope],
      authenticated: route.url.startsWith('/v1/'),
      write: route.config?.idempotent === true,
      errorCodes,
    },
  ]
}

/**
 * The headers of a response: a reference to the component where required (a reference cannot
 * override `required`), else inline and optional. `referenced` collects the components used.
 */
function headersOf(required: Set<HeaderName>, optional: Set<HeaderName>, referenced: Set<HeaderName>): Json {
  const headers: Json = {}
  for (const name of Object.keys(RESPONSE_HEADERS) as HeaderName[]) {
    if (required.has(name)) {
      headers[name] = { $ref: `#/components/headers/${name}` }
      referenced.add(name)
    } else if (optional.has(name)) {
      headers[name] = { ...RESPONSE_HEADERS[name], required: false }
    }
  }
  return headers
}

// Every answer of an authenticated operation shows the rate-limit budget that applied: the key's,
// or the client IP's when the request was refused before a key was known.
function successHeaders(facts: OperationFacts, referenced: Set<HeaderName>): Json {
  const required = new Set<HeaderName>(['X-Request-Id'])
  if (facts.authenticated) for (const name of ['X-Key-Scopes', ...RATE_LIMIT_HEADERS] as const) required.add(name)
  return headersOf(required, new Set(facts.write ? ['Idempotent-Replayed'] : []), referenced)
}

function errorResponse(codes: readonly ErrorCode[], facts: OperationFacts, referenced: Set<HeaderName>): Json {
  const carriedByAll = (name: HeaderName) => codes.every((code) => codeHeaders(code).includes(name))
  const carriedByAny = (name: HeaderName) => codes.some((code) => codeHeaders(code).includes(name))
  const required = new Set<HeaderName>(['X-Request-Id', ...(facts.authenticated ? RATE_LIMIT_HEADERS : [])])
  const optional = new Set<HeaderName>(facts.authenticated ? ['X-Key-Scopes'] : [])
  if (facts.scope !== undefined) required.add('X-Accepted-Scopes')
  // The one error a write stores for replay: what its handler answered.
  if (facts.write && codes.includes('not_found')) optional.add('Idempotent-Replayed')
  for (const name of Object.keys(RESPONSE_HEADERS) as HeaderName[]) {
    if (carriedByAll(name)) required.add(name)
    else if (carriedByAny(name)) optional.add(name)
  }

  const scope = facts.scope
  const onlyScopeErrors = codes.every((code) => code === 'insufficient_scope')
  const errorShape: Json = {
    type: 'object',
    required: onlyScopeErrors ? ['code', 'requiredScope'] : ['code'],
    properties: {
      code: { type: 'string', enum: [...codes] },
      ...(onlyScopeErrors && scope !== undefined
        ? { requiredScope: { type: 'string', enum: [...facts.refusableScopes] } }
        : {}),
    },
  }
  const examples: Json = {}
  for (const code of codes) {
    // Routes without a scope never answer insufficient_scope; any scope makes a valid example.
    const error = EXAMPLE_ERRORS[code](scope ?? 'studio:read')
    examples[code] = { summary: errorCatalog[code].summary, value: envelope(error, EXAMPLE_REQUEST_ID) }
  }
  return {
    description: codes.map((code) => `\`${code}\`: ${errorCatalog[code].summary}`).join(' '),
    headers: headersOf(required, optional, referenced),
    content: {
      'application/json': {
        schema: {
          allOf: [
            { $ref: '#/components/schemas/ErrorEnvelope' },
            { type: 'object', required: ['error'], properties: { error: errorShape } },
          ],
        },
        examples,
      },
    },
  }
}

function securityOf(facts: OperationFacts): Json[] {
  if (!facts.authenticated) return []
  // OpenAPI 3.1 lets a non-OAuth requirement list the roles it needs: here, the scope.
  const roles = facts.scope === undefined ? [] : [facts.scope]
  return Object.keys(SECURITY_SCHEMES).map((scheme) => ({ [scheme]: roles }))
}

/** True when a request body schema accepts no body (JSON null): the body is then optional. */
function acceptsNoBody(requestBody: Json): boolean {
  const content = requestBody.content as Record<string, { schema?: Json }> | undefined
  const schema = content?.['application/json']?.schema
  const members = (schema?.anyOf ?? schema?.oneOf ?? []) as Json[]
  return members.some((member) => member.type === 'null')
}

/** Header parameters keep their usual spelling in the document (route schemas name them in lower case). */
const HEADER_SPELLING: Record<string, string> = { 'idempotency-key': 'Idempotency-Key' }

function spelled(parameter: Json): Json {
  const name = parameter.in === 'header' ? HEADER_SPELLING[String(parameter.name)] : undefined
  return name === undefined ? parameter : { ...parameter, name }
}

const METHODS = new Set(['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'])

/**
 * `transformObject` of @fastify/swagger: completes every operation from the facts of its route.
 * An operation without an operationId (or without its facts) stops the generation: each must
 * carry one.
 */
export function describeOperations(document: Json, facts: ReadonlyMap<string, OperationFacts>): Json {
  const paths = document.paths as Record<string, Record<string, Json>>
  const referenced = new Set<HeaderName>()
  for (const [path, item] of Object.entries(paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (!METHODS.has(method)) continue
      const operationId = operation.operationId as string | undefined
      const known = operationId === undefined ? undefined : facts.get(operationId)
      if (!known) throw new Error(`${method.toUpperCase()} ${path}: every operation needs an operationId`)
      const requestBody = operation.requestBody as Json | undefined
      if (requestBody && acceptsNoBody(requestBody)) requestBody.required = false
      const responses: Record<string, Json> = {}
      for (const [status, response] of Object.entries(operation.responses as Record<string, Json>)) {
        const codes = known.errorCodes.get(status)
        responses[status] = codes
          ? errorResponse(codes, known, referenced)
          : { description: response.description, headers: successHeaders(known, referenced), content: response.content }
      }
      const { operationId: _, summary, description, tags, parameters, ...rest } = operation
      // Rebuilt in reading order: what it is, who may call it, what it takes, what it answers.
      item[method] = {
        operationId,
        summary,
        description,
        tags,
        'x-required-scope': known.scope ?? null,
        security: securityOf(known),
        parameters: [
          ...((parameters as Json[] | undefined) ?? []).map(spelled),
          { $ref: '#/components/parameters/X-Request-Id' },
          ...(known.authenticated
            ? [simulateErrorParameter(known), { $ref: '#/components/parameters/Simulate-Latency' }]
            : []),
        ],
        ...rest,
        responses,
      }
    }
  }
  const components = document.components as Json
  components.headers = Object.fromEntries(
    (Object.keys(RESPONSE_HEADERS) as HeaderName[])
      .filter((name) => referenced.has(name))
      .map((name) => [name, { ...RESPONSE_HEADERS[name], required: true }]),
  )
  components.parameters = { 'X-Request-Id': REQUEST_ID_PARAMETER, 'Simulate-Latency': SIMULATE_LATENCY_PARAMETER }
  // A plain copy: objects shared by several operations would otherwise become YAML anchors and aliases.
  return JSON.parse(JSON.stringify(document))
}
