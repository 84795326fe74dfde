import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { Scope } from '../lib/api-keys.js'
import {
  ApiError,
  badGateway,
  type ErrorCode,
  errorCodes,
  insufficientScope,
  internal,
  invalidKey,
  invalidRequest,
  keyNotFound,
  keyRefusals,
  notFound,
  studioNotFound,
  unavailable,
  writeDisabled,
} from '../lib/errors.js'
import type { RateLimiter } from '../plugins/rate-limit.js'
import { declaredErrorCodes } from '../schemas/error-envelope.js'
import { callerOf } from './authentication.js'
import { asSimulated, type Step } from './run-steps.js'

/** The request headers of error simulation (docs/test-mode.md), as Node gives their names. */
const SIMULATE_ERROR = 'simulate-error'
const SIMULATE_LATENCY = 'simulate-latency'
/** The longest delay Simulate-Latency may ask for, in milliseconds. */
export const MAX_SIMULATED_LATENCY_MS = 10_000
/** Retry-After of a simulated 429 or 503: short, so a consumer's CI retries quickly. */
const SIMULATED_RETRY_AFTER_SECONDS = 1

const LATENCY = /^\d{1,5}$/

/** What a simulated error needs to know of its route. */
interface SimulatedRoute {
  readonly scope: Scope | undefined
  /** The route's real 404: a missing studio, a missing key, or (no such id in its path) a missing resource. */
  readonly notFound: () => ApiError
  readonly limiter: RateLimiter
}

/**
 * Each code as the gateway raises it for real, by the factories of the catalog: the same status,
 * message and headers. The step returns it (or rejects with it), and it is answered as every refusal of the order of
 * checks is: the envelope with the request id, X-Accepted-Scopes on a scoped route, the budget
 * in the RateLimit headers; marked simulated: no error logged, counted apart from real errors.
 */
const SIMULATED: Record<
  ErrorCode,
  (request: FastifyRequest, reply: FastifyReply, route: SimulatedRoute) => ApiError | Promise<ApiError>
> = {
  invalid_request: () => invalidRequest('the request is malformed'),
  // As a refused key is answered: no X-Key-Scopes, the client IP's failure budget shown (not spent).
  invalid_key: async (request, reply, route) => {
    reply.removeHeader('x-key-scopes')
    await route.limiter.showFailureBudget(request, reply)
    // A fresh error, with the refusal's message: the shared one must not be marked simulated.
    return invalidKey(keyRefusals.unknown.message)
  },
  insufficient_scope: (_request, _reply, route) => insufficientScope(route.scope as Scope),
  not_found: (_request, _reply, route) => route.notFound(),
  rate_limited: (request, reply, route) =>
    route.limiter.simulatedRefusal(request, reply, SIMULATED_RETRY_AFTER_SECONDS),
  write_disabled: () => writeDisabled(),
  unavailable: () =>
    unavailable('API key verification is temporarily unavailable; retry shortly', SIMULATED_RETRY_AFTER_SECONDS),
  bad_gateway: () => badGateway('the upstream studio service answered with an unexpected status; retry with backoff'),
  internal: () => internal(),
}

const refusals = {
  liveKey: invalidRequest(
    'Simulate-Error and Simulate-Latency are accepted only with a test key (sk_test_…): a live key never simulates',
  ),
  latency: invalidRequest(
    `header Simulate-Latency must be a whole number of milliseconds from 0 to ${MAX_SIMULATED_LATENCY_MS}`,
  ),
}

function notFoundOf(url: string): () => ApiError {
  if (url.includes(':studioId')) return studioNotFound
  if (url.includes(':keyId')) return keyNotFound
  return () => notFound('no such resource')
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * The step of error simulation, right after the key and its rate limit (docs/test-mode.md): a
 * test key that sends `Simulate-Error: <code>` gets the answer that code has for real on this
 * route, and `Simulate-Latency: <ms>` delays the answer (simulated or not). A code the route
 * cannot answer (it is not among the route's declared error responses) is 400, naming the ones
 * it can; a live key sending either header is 400, never ignored. Requests without them pass at once.
 */
export function simulateErrors(route: RouteOptions, limiter: RateLimiter): Step {
  const allowed = new Set([...declaredErrorCodes(route.schema?.response).values()].flat())
  // In the catalog's order, for the message.
  const allowedList = errorCodes.filter((code) => allowed.has(code)).join(', ')
  const unknownCode = invalidRequest(
    `header Simulate-Error must name a code this route can answer: one of ${allowedList}`,
  )
  const simulated: SimulatedRoute = {
    scope: route.config?.scope,
    notFound: notFoundOf(route.url),
    limiter,
  }

  function answer(request: FastifyRequest, reply: FastifyReply, code: ErrorCode | undefined) {
    if (code === undefined) return undefined
    const error = SIMULATED[code](request, reply, simulated)
    if (!(error instanceof Promise)) return asSimulated(error)
    return error.then((made) => {
      throw asSimulated(made)
    })
  }

  return function simulateErrors(request, reply) {
    const { headers } = request
    const code = headers[SIMULATE_ERROR]
    const latency = headers[SIMULATE_LATENCY]
    if (code === undefined && latency === undefined) return
    if (callerOf(request).mode !== 'test') return refusals.liveKey
    if (code !== undefined && !allowed.has(code as ErrorCode)) return unknownCode
    const chosen = code as ErrorCode | undefined
    if (latency === undefined) return answer(request, reply, chosen)
    if (typeof latency !== 'string' || !LATENCY.test(latency) || Number(latency) > MAX_SIMULATED_LATENCY_MS) {
      return refusals.latency
    }
    return delay(Number(latency)).then(() => {
      // Once waiting, a refusal can only be a rejection.
      const refusal = answer(request, reply, chosen)
      if (refusal instanceof ApiError) throw refusal
      return refusal
    })
  }
}
