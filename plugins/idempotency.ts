import type { onSendHookHandler, preHandlerAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { ApiError, type ErrorCode, errorCatalog } from '../lib/errors.js'
import { type Claim, fingerprintOf, type Idempotency, REPLAYED_HEADER } from '../lib/idempotency.js'
import { callerOf } from './auth.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The Idempotency-Key claim this request holds while it runs. */
    idempotencyClaim: Claim | null
  }
}

/**
 * `Idempotency-Key` on write routes: a preHandler (after the write gate, so a gated or invalid
 * request never claims a key) claims the key or replays the stored answer; onSend stores the
 * answer of the request that ran. The header's syntax is checked by the route schema.
 */
export default fp<{ idempotency: Idempotency }>(
  async function idempotencyKeys(app, { idempotency }) {
    app.decorateRequest('idempotencyClaim', null)

    const claimOrReplay: preHandlerAsyncHookHandler = async (request, reply) => {
      const key = request.headers['idempotency-key']
      if (typeof key !== 'string') return
      const { studioId } = request.params as { studioId: string }
      const fingerprint = fingerprintOf(request.method, request.routeOptions.url ?? '', studioId, request.body)
      const outcome = await idempotency.begin(callerOf(request).id, key, fingerprint)
      if (outcome.kind === 'execute') {
        request.idempotencyClaim = outcome.claim
        return
      }
      reply.header(REPLAYED_HEADER, 'true')
      // A stored error is raised again, so that it carries this request's id, not the first one's.
      if (outcome.statusCode >= 400) throw replayedError(outcome.body)
      return reply.code(outcome.statusCode).type('application/json; charset=utf-8').send(outcome.body)
    }

    const storeAnswer: onSendHookHandler = async (request, reply, payload) => {
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

    // Route hooks of the write routes only: reads (the hot path) pay for neither. Route-level
    // preHandlers run after the scope's, so after the write gate.
    app.addHook('onRoute', (route) => {
      if (route.config?.write !== true) return
      route.preHandler = [...asArray(route.preHandler), claimOrReplay]
      route.onSend = [...asArray(route.onSend), storeAnswer]
    })
  },
  { name: 'idempotency', dependencies: ['auth'] },
)

function replayedError(body: string): ApiError {
  const { error } = JSON.parse(body) as { error: { code: ErrorCode; message: string } }
  return new ApiError(error.code in errorCatalog ? error.code : 'internal', error.message)
}

function asArray<T>(hooks: T | T[] | undefined): T[] {
  if (hooks === undefined) return []
  return Array.isArray(hooks) ? hooks : [hooks]
}
