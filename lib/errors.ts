/**
 * The catalog of error codes of the published contract (spec/errors-and-status-codes.txt) and the
 * typed errors routes and plugins throw. The error handler renders them; the OpenAPI description
 * reads the same catalog, so a code cannot exist in one and not the other.
 */

export const errorCatalog = {
  invalid_request: { status: 400, summary: 'Malformed input: fix the request, do not retry it unchanged.' },
  invalid_key: { status: 401, summary: 'No key sent, or the key is unknown, revoked, or expired.' },
  insufficient_scope: { status: 403, summary: 'The key is valid but lacks the scope this route needs.' },
  not_found: { status: 404, summary: 'The resource does not exist, or the account cannot see it.' },
  rate_limited: { status: 429, summary: 'The rate limit is exceeded: retry after Retry-After seconds.' },
  write_disabled: { status: 503, summary: 'The write surface is gated off: not retryable.' },
  unavailable: { status: 503, summary: 'A dependency is temporarily down: retry with backoff.' },
  bad_gateway: { status: 502, summary: 'An upstream service answered unexpectedly: retry with backoff.' },
  internal: { status: 500, summary: 'An unexpected error on our side: retry with backoff.' },
} as const

export type ErrorCode = keyof typeof errorCatalog
export const errorCodes = Object.keys(errorCatalog) as ErrorCode[]

export interface ApiErrorOptions {
  requiredScope?: string
  /** Extra response headers, such as Retry-After. */
  headers?: Record<string, string>
  cause?: unknown
}

/**
 * An error the client is meant to see, with its code and a message safe to show. It skips the
 * stack trace: these are expected outcomes (a bad key, a missing studio), thrown on hot paths.
 */
export class ApiError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly requiredScope: string | undefined
  readonly headers: Record<string, string> | undefined

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

export const invalidRequest = (message: string) => new ApiError('invalid_request', message)

// RFC 9110: a 401 names the scheme to authenticate with.
const AUTHENTICATE = { 'www-authenticate': 'Bearer realm="studio-gateway"' }

export const invalidKey = (message: string) => new ApiError('invalid_key', message, { headers: AUTHENTICATE })

export const insufficientScope = (scope: string) =>
  new ApiError('insufficient_scope', `the API key is missing the required scope: ${scope}`, {
    requiredScope: scope,
  })

export const notFound = (message: string) => new ApiError('not_found', message)

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
