import type { FastifyRequest, onSendHookHandler } from 'fastify'
import { ApiError, type ErrorCode, errorCatalog } from '../lib/errors.js'
import { type Claim, fingerprintOf, type Idempotency, REPLAYED_HEADER } from '../lib/idempotency.js'
import { callerOf } from './authentication.js'
import type { Step } from './run-steps.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The Idempotency-Key claim this request holds while it runs. */
    idempotencyClaim: Claim | null
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route takes an `Idempotency-Key` (a write that a retry must not run twice). */
    idempotent?: boolean
  }
}

/**
 * Step 8 of the order of checks, on idempotent routes sent with an `Idempotency-Key` (its syntax is
 * checked by the route schema, in validation): after the write gate, so a gated or invalid
 * request never claims a key. Claims the key for this request, or replays the stored answer of
 * the first request with it (400 when the key was used for another request, 503 when that one
 * is still running).
 */
export function claimIdempotencyKey(idempotency: Idempotency): Step {
  return function claimIdempotencyKey(request, reply) {
    const key = request.headers['idempotency-key']
    if (typeof key !== 'string') return
    return idempotency.begin(callerOf(request).id, key, fingerprintOfRequest(request)).then((outcome) => {
      if (outcome.kind === 'execute') {
        request.idempotencyClaim = outcome.claim
        return
      }
      reply.header(REPLAYED_HEADER, 'true')
      // A stored error is raised again, so that it carries this request's id, not the first one's.
      if (outcome.statusCode >= 400) throw replayedError(outcome.body)
      reply.code(outcome.statusCode).type('application/json; charset=utf-8').send(outcome.body)
    })
  }
}

/** After the handler (onSend): stores the answer of the request that held the claim. */
export function storeIdempotentAnswer(idempotency: Idempotency): onSendHookHandler {
  return async function storeIdempotentAnswer(request, reply, payload) {
    const claim = request.idempotencyClaim
    if (claim === null) return payload
    request.idempotencyClaim = null
    try {
      if (typeof payload === 'string') await idempotency.finish(claim, reply.statusCode, payload)
      else await idempotency.release(claim)
    } catch (err) {
      // The write's answer still goes out. The claim expires after its lease; a retry then runs
      // the write again, which the transitions' own idempotency makes harmless.
      request.log.warn({ err }, 'could not store the answer of an Idempotency-Key request')
    }
    return payload
  }
}

function fingerprintOfRequest(request: FastifyRequest): string {
  return fingerprintOf(request.method, request.routeOptions.url ?? '', request.params, request.body)
}

function replayedError(body: string): ApiError {
  const { error } = JSON.parse(body) as { error: { code: ErrorCode; message: string } }
  return new ApiError(error.code in errorCatalog ? error.code : 'internal', error.message)
}
