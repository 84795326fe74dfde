import type { components, operations } from './openapi.generated.js'
import type { RateLimitState } from './rate-limit.js'

/** The error codes of the published contract: `ErrorCode` in openapi.yaml. */
export type ApiErrorCode = components['schemas']['ErrorCode']

/**
 * The codes the client gives to failures that are not an answer in the envelope:
 * - `network_error`: no answer at all (connection refused or reset, DNS, TLS).
 * - `timeout`: an attempt outlived `attemptTimeoutMs`, or the call outlived its `timeoutMs`.
 * - `aborted`: the caller's `AbortSignal` fired.
 * - `unexpected_response`: an answer that is not the envelope (a proxy's HTML page, a body that
 *   is not JSON, a redirect), or a success whose body is not the documented shape.
 */
export type ClientErrorCode = 'network_error' | 'timeout' | 'aborted' | 'unexpected_response'

/**
 * What `StudioGatewayError.code` holds. The spec may add codes within /v1: a code this version of
 * the client does not know is kept as the server sent it (typed `string & {}`, so editors still
 * complete the known ones) and never retried. Give your `switch` a `default` branch.
 */
export type StudioGatewayErrorCode = ApiErrorCode | ClientErrorCode | (string & {})

export type OperationId = keyof operations

/**
 * How each code of the spec is retried ("How to handle errors"): `backoff` with capped exponential
 * backoff and full jitter, `retry-after` after the Retry-After the answer names, `never` for the
 * rest. `satisfies` makes a code added to openapi.yaml a type error here until it has a policy.
 */
export const retryPolicyOf = {
  invalid_request: 'never',
  invalid_key: 'never',
  insufficient_scope: 'never',
  not_found: 'never',
  rate_limited: 'retry-after',
  write_disabled: 'never',
  unavailable: 'backoff',
  bad_gateway: 'backoff',
  internal: 'backoff',
  network_error: 'backoff',
  timeout: 'backoff',
  aborted: 'never',
  unexpected_response: 'never',
} as const satisfies Record<ApiErrorCode | ClientErrorCode, 'backoff' | 'retry-after' | 'never'>

/** A proxy or load balancer in front of the gateway says "try again" with these statuses. */
const TRANSIENT_PROXY_STATUSES = new Set([502, 503, 504])

export interface StudioGatewayErrorInit {
  operation: OperationId
  code: StudioGatewayErrorCode
  message: string
  attempts: number
  status?: number | undefined
  requestId?: string | undefined
  requiredScope?: string | undefined
  retryAfter?: number | undefined
  rateLimit?: RateLimitState | undefined
  cause?: unknown
}

/**
 * Every failure of a call: an error answer of the gateway (its envelope, field for field), an
 * answer that is not the envelope, a transport failure, an abort. Branch on `code`; quote
 * `requestId` when you ask for help.
 */
export class StudioGatewayError extends Error {
  override readonly name = 'StudioGatewayError'
  /** The operation that failed (its operationId in openapi.yaml). */
  readonly operation: OperationId
  readonly code: StudioGatewayErrorCode
  /** The HTTP status of the last answer; undefined when there was none (transport, abort). */
  readonly status: number | undefined
  /**
   * The envelope's `requestId` (which equals the `X-Request-Id` header); without an envelope, the
   * header, or the id the client sent on the last attempt.
   */
  readonly requestId: string | undefined
  /** Only on `insufficient_scope`: the scope the key is missing. */
  readonly requiredScope: string | undefined
  /** Seconds from the answer's `Retry-After` header, when it had one (429, 503 unavailable). */
  readonly retryAfter: number | undefined
  /** How many attempts the call made before this error was thrown (0: aborted before the first). */
  readonly attempts: number
  /** The rate-limit state the last answer showed (its RateLimit fields), when it had one. */
  readonly rateLimit: RateLimitState | undefined

  constructor(init: StudioGatewayErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause })
    this.operation = init.operation
    this.code = init.code
    this.status = init.status
    this.requestId = init.requestId
    this.requiredScope = init.requiredScope
    this.retryAfter = init.retryAfter
    this.attempts = init.attempts
    this.rateLimit = init.rateLimit
  }

  /** For structured loggers: an Error's own message is not enumerable, so JSON.stringify would drop it. */
  toJSON() {
    const { name, operation, code, status, message, requestId, requiredScope, retryAfter, attempts } = this
    return { name, operation, code, status, message, requestId, requiredScope, retryAfter, attempts }
  }

  /**
   * True when the spec calls this failure transient: trying again later may succeed. The client
   * already retried it as far as its options allow (a write without an Idempotency-Key: not at all).
   */
  get transient(): boolean {
    const policy = (retryPolicyOf as Record<string, string | undefined>)[this.code]
    if (this.code === 'unexpected_response') return TRANSIENT_PROXY_STATUSES.has(this.status ?? 0)
    return policy === 'backoff' || policy === 'retry-after'
  }
}
