import { STATUS_CODES } from 'node:http'
import { BadPosition, StoreUnavailable, UpstreamBrokeContract, UpstreamUnavailable } from '../stores/errors.js'
import { isDescriptorExhaustion } from './descriptors.js'
import { describeValidation, type ValidationIssue } from './validation-messages.js'

/**
 * The catalog of the error contract (spec/errors-and-status-codes.txt): every code with its HTTP
 * status, whether a client may retry it, the headers it always carries, and the factories that
 * raise it. Everything that answers an error derives from here: the error handler, the answers
 * written straight to a socket (requests Node's parser refuses), and the OpenAPI document.
 */

/** Headers an error code carries besides the ones every error has (see `errorHeaders`). */
export type CodeHeader = 'WWW-Authenticate' | 'Retry-After'

export interface CatalogEntry {
  readonly status: number
  /** The spec's "how to handle errors": retry with backoff (after Retry-After where it is sent). */
  readonly retryable: boolean
  readonly headers: readonly CodeHeader[]
  /**
   * Only ever answered once the key is verified (so the answer always carries X-Key-Scopes): the
   * codes raised after authentication in the order of checks.
   */
  readonly afterKey: boolean
  /** One line for the OpenAPI document and the docs. */
  readonly summary: string
}

export const errorCatalog = {
  invalid_request: {
    status: 400,
    retryable: false,
    headers: [],
    afterKey: false,
    summary: 'Malformed input: fix the request, do not retry it unchanged.',
  },
  invalid_key: {
    status: 401,
    retryable: false,
    headers: ['WWW-Authenticate'],
    afterKey: false,
    summary: 'No key sent, or the key is unknown, revoked, or expired.',
  },
  insufficient_scope: {
    status: 403,
    retryable: false,
    headers: [],
    afterKey: true,
    summary: 'The key is valid but lacks the scope this route needs.',
  },
  not_found: {
    status: 404,
    retryable: false,
    headers: [],
    afterKey: true,
    summary: 'The resource does not exist, or the account cannot see it.',
  },
  rate_limited: {
    status: 429,
    retryable: true,
    headers: ['Retry-After'],
    afterKey: false,
    summary: 'The rate limit is exceeded: retry after Retry-After seconds.',
  },
  write_disabled: {
    status: 503,
    retryable: false,
    headers: [],
    afterKey: true,
    summary: 'The write surface is gated off: not retryable.',
  },
  unavailable: {
    status: 503,
    retryable: true,
    headers: ['Retry-After'],
    afterKey: false,
    summary: 'A dependency is temporarily down: retry with backoff.',
  },
  bad_gateway: {
    status: 502,
    retryable: true,
    headers: [],
    afterKey: true,
    summary: 'An upstream service answered unexpectedly: retry with backoff.',
  },
  internal: {
    status: 500,
    retryable: true,
    headers: [],
    afterKey: false,
    summary: 'An unexpected error on our side: retry with backoff.',
  },
} as const satisfies Record<string, CatalogEntry>

export type ErrorCode = keyof typeof errorCatalog
export const errorCodes = Object.keys(errorCatalog) as ErrorCode[]

export interface ApiErrorOptions {
  readonly requiredScope?: string
  /** Values of the code's headers (lower-case names), such as `retry-after`. */
  readonly headers?: Readonly<Record<string, string>>
  readonly cause?: unknown
}

/**
 * An error the client is meant to see, with its code and a message safe to show. It skips the
 * stack trace: these are expected outcomes (a bad key, a missing studio), thrown on hot paths.
 */
export class ApiError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly requiredScope: string | undefined
  readonly headers: Readonly<Record<string, string>> | undefined

  constructor(code: ErrorCode, message: string, options: ApiErrorOptions = {}) {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    Error.stackTraceLimit = limit
    this.name = 'ApiError'
    this.code = code
    this.statusCode = errorCatalog[code].status
    this.requiredScope = options.requiredScope
    this.headers = options.headers
  }
}

// The factories: every error the gateway answers is made by one of these.

export const invalidRequest = (message: string) => new ApiError('invalid_request', message)

// RFC 9110: a 401 names the scheme to authenticate with.
const AUTHENTICATE = { 'www-authenticate': 'Bearer realm="studio-gateway"' }

export const invalidKey = (message: string) => new ApiError('invalid_key', message, { headers: AUTHENTICATE })

/**
 * Why a key is refused. Built once: they carry nothing of the request (the envelope adds the
 * request id), and a refused key must be cheap to answer.
 */
export const keyRefusals = {
  missing: invalidKey('no API key sent: use the header Authorization: Bearer sk_live_… or X-API-Key: sk_live_…'),
  malformed: invalidKey(
    'the API key is malformed: expected sk_live_ (or sk_test_) and 38 letters or digits, with a valid checksum',
  ),
  notBearer: invalidKey('the Authorization header is malformed: expected Authorization: Bearer sk_live_…'),
  unknown: invalidKey('the API key is not recognised'),
  revoked: invalidKey('the API key has been revoked'),
  expired: invalidKey('the API key has expired'),
} as const

export const insufficientScope = (scope: string) =>
  new ApiError('insufficient_scope', `the API key is missing the required scope: ${scope}`, {
    requiredScope: scope,
  })

export const notFound = (message: string) => new ApiError('not_found', message)

/** A studio that does not exist or is another account's: the same answer, byte for byte. */
export const studioNotFound = () => notFound('studio not found')

/** A key that does not exist or is another account's: the same answer, byte for byte. */
export const keyNotFound = () => notFound('key not found')

export const rateLimited = (retryAfterSeconds: number) =>
  new ApiError(
    'rate_limited',
    `rate limit exceeded: retry in ${retryAfterSeconds} second${retryAfterSeconds === 1 ? '' : 's'}`,
    { headers: { 'retry-after': String(retryAfterSeconds) } },
  )

export const writeDisabled = () =>
  new ApiError('write_disabled', 'the write surface (go-live / go-offline) is disabled on this gateway')

export const unavailable = (message: string, retryAfterSeconds = 1, cause?: unknown) =>
  new ApiError('unavailable', message, { headers: { 'retry-after': String(retryAfterSeconds) }, cause })

export const badGateway = (message: string, cause?: unknown) => new ApiError('bad_gateway', message, { cause })

export const INTERNAL_MESSAGE = 'an unexpected error occurred; if it persists, contact support with the requestId'

export const internal = (cause?: unknown) => new ApiError('internal', INTERNAL_MESSAGE, { cause })

/** The answer to any cursor this API did not issue for this list. */
export const cursorRejected = () =>
  invalidRequest(
    'querystring parameter "cursor" is not valid for this list: use the nextCursor of a previous page unchanged',
  )

/** The body size limit of every route (the spec's table has no 413: a larger body is a 400). */
export const BODY_LIMIT = 64 * 1024

/** The envelope of the contract: `{ error: { code, message, requestId, requiredScope? } }`. */
export function envelope(error: ApiError, requestId: string) {
  return {
    error: {
      code: error.code,
      message: error.message,
      requestId,
      ...(error.requiredScope === undefined ? {} : { requiredScope: error.requiredScope }),
    },
  }
}

/**
 * The headers every error answer carries besides its request id: nosniff (as every answer), and
 * no-store (an error is about this request at this moment; a 404 would otherwise be cacheable,
 * RFC 9111).
 */
export const ERROR_HEADERS: readonly (readonly [string, string])[] = [
  ['x-content-type-options', 'nosniff'],
  ['cache-control', 'no-store'],
]

/** The headers of an error answer: its request id, ERROR_HEADERS, and the code's own. */
export function errorHeaders(error: ApiError, requestId: string): Record<string, string> {
  return { 'x-request-id': requestId, ...Object.fromEntries(ERROR_HEADERS), ...error.headers }
}

/**
 * The whole HTTP/1.1 answer of an error, for answers written straight to a socket (a request
 * Node's parser refused never reaches Fastify). The connection closes after it.
 */
export function rawErrorAnswer(error: ApiError, requestId: string): string {
  const body = JSON.stringify(envelope(error, requestId))
  const headers = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    ...errorHeaders(error, requestId),
    connection: 'close',
  }
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`)
  return `HTTP/1.1 ${error.statusCode} ${STATUS_CODES[error.statusCode]}\r\n${lines.join('')}\r\n${body}`
}

/** The parts of a Fastify error this module reads. */
interface FrameworkError extends Error {
  readonly code?: string
  readonly statusCode?: number
  readonly validation?: readonly ValidationIssue[]
  readonly validationContext?: string
}

/**
 * Maps anything thrown to a code of the catalog: our own errors as they are, the domain errors of
 * the stores, Fastify's refusals of the client's input, and `internal` for the rest. Only our own
 * errors carry their message out.
 */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error
  // Its message is written for a client (no host, no driver text); the fault and cause go to the log.
  if (error instanceof StoreUnavailable) return unavailable(error.message, error.retryAfterSeconds, error)
  if (error instanceof UpstreamUnavailable) {
    return unavailable(
      error.slow
        ? 'the upstream studio service did not answer in time; retry shortly'
        : 'the upstream studio service is unreachable; retry shortly',
      1,
      error,
    )
  }
  if (error instanceof UpstreamBrokeContract) {
    return badGateway(`the upstream studio service answered ${error.what}; retry with backoff`, error)
  }
  if (error instanceof BadPosition) return cursorRejected()
  // Out of file descriptors (EMFILE / ENFILE) while serving: transient, the load is shed (lib/edge.ts).
  if (isDescriptorExhaustion(error)) return unavailable('the gateway is out of resources; retry with backoff', 1, error)
  const framework = error as FrameworkError
  if (framework.validation) return invalidRequest(describeValidation(framework.validation, framework.validationContext))
  switch (framework.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return invalidRequest(`body is larger than the ${BODY_LIMIT}-byte limit`)
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return invalidRequest('Content-Type must be application/json')
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return invalidRequest('Content-Length does not match the body')
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return invalidRequest('body is not valid JSON')
    case 'FST_ERR_BAD_URL':
      return invalidRequest('the request path is not a valid URL (bad percent-encoding)')
    case 'FST_ERR_MAX_PARAM_LENGTH':
      // An id too long to route cannot name a studio: the same answer as any other unknown id.
      return studioNotFound()
  }
  const status = framework.statusCode
  if (status === 404) return notFound('no such resource')
  // Anything else Fastify refused before our code ran was the client's input.
  if (typeof status === 'number' && status >= 400 && status < 500 && framework.code?.startsWith('FST_')) {
    return invalidRequest('the request is malformed')
  }
  return internal(error)
}
