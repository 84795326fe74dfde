import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ApiError, invalidRequest } from '../lib/errors.js'
import type { KeyVerifier, VerifiedKey } from '../lib/key-verifier.js'
import type { CallContext } from '../stores/types.js'
import { sendError } from './errors.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified key of this request; set by the auth hook before any /v1 handler runs. */
    apiKey: VerifiedKey | null
  }
}

const BEARER = /^Bearer +(\S+) *$/i

/**
 * The key sent with the request: `Authorization: Bearer …` or `X-API-Key: …`. Both at once must
 * agree. An Authorization header of another scheme yields its raw value, which then fails the
 * key check as malformed.
 */
export function credentialOf(request: FastifyRequest): string | undefined {
  const authorization = request.headers.authorization?.trim() || undefined
  const headerKey = (request.headers['x-api-key'] as string | undefined)?.trim() || undefined
  const bearer = authorization === undefined ? undefined : (BEARER.exec(authorization)?.[1] ?? authorization)
  if (bearer !== undefined && headerKey !== undefined && bearer !== headerKey) {
    throw invalidRequest('send the API key in one header: Authorization and X-API-Key hold different values')
  }
  return bearer ?? headerKey
}

/** The key of a request that passed the auth hook. */
export function callerOf(request: FastifyRequest): VerifiedKey {
  if (request.apiKey === null) throw new Error('a /v1 handler ran without a verified key')
  return request.apiKey
}

/** What a studio call needs to know of the request: the caller's account and the request id. */
export function callContextOf(request: FastifyRequest): CallContext {
  return { accountId: callerOf(request).accountId, requestId: request.id }
}

export interface AuthOptions {
  readonly verifier: KeyVerifier
  /**
   * Called with the error when a request is rejected, before it is answered; may throw another
   * error instead (the rate limiter answers 429 once a client IP has failed too often).
   */
  readonly onRejected?: (request: FastifyRequest, reply: FastifyReply, error: unknown) => Promise<void>
}

/**
 * Answers an expected refusal (401 invalid_key, or the 429 of the IP's failure budget) from the
 * hook itself, in the envelope, rather than through Fastify's error path: a rejected key must be
 * cheap to answer. Anything else (503 unavailable, a bug) goes to the error handler, which logs it.
 */
function refuse(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  if (!(error instanceof ApiError) || (error.code !== 'invalid_key' && error.code !== 'rate_limited')) throw error
  sendError(request, reply, error)
  return reply
}

/**
 * Authenticates every request of the scope it is registered in (the /v1 scope): 401 invalid_key,
 * or 503 unavailable when verification cannot be done. Answers carry X-Key-Scopes once the key is
 * known and are never cached by intermediaries.
 */
export default fp<AuthOptions>(
  async function auth(app, { verifier, onRejected }) {
    // Decorated at the root too (see app.ts), so every request has the same shape.
    if (!app.hasRequestDecorator('apiKey')) app.decorateRequest('apiKey', null)
    app.addHook('onRequest', async (request, reply) => {
      reply.header('cache-control', 'no-store')
      let key: VerifiedKey
      try {
        // A cached key (or a refusal) comes back at once: awaited only when the store is asked.
        const verified = verifier.verify(credentialOf(request))
        key = verified instanceof Promise ? await verified : verified
      } catch (error) {
        try {
          await onRejected?.(request, reply, error)
        } catch (limited) {
          return refuse(request, reply, limited)
        }
        return refuse(request, reply, error)
      }
      request.apiKey = key
      reply.header('x-key-scopes', key.scopesHeader)
    })
  },
  { name: 'auth', dependencies: ['errors'] },
)
