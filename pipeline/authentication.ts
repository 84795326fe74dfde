import type { FastifyRequest } from 'fastify'
import { bearerToken } from '../lib/bearer.js'
import { ApiError, invalidRequest, keyRefusals } from '../lib/errors.js'
import type { KeyVerifier, VerifiedKey } from '../lib/key-verifier.js'
import type { CallContext } from '../stores/types.js'
import type { Step } from './run-steps.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified key of this request; set by `authenticate` before any /v1 handler runs. */
    apiKey: VerifiedKey | null
  }
}

/**
 * The key sent with the request: `Authorization: Bearer …` or `X-API-Key: …`. Both at once must
 * agree, and each may be sent once: Node keeps only the first of two Authorization headers, while
 * a proxy in front may read the other, so two are refused (400). An Authorization header of
 * another scheme (or a bare key with no scheme) is a malformed credential (401).
 */
function credentialOf(request: FastifyRequest): string | undefined | ApiError {
  const { headers } = request
  const authorization = headers.authorization
  const apiKeyHeader = headers['x-api-key']
  if (authorization === undefined && apiKeyHeader === undefined) return undefined
  if (sentTwice(request.raw.rawHeaders)) {
    return invalidRequest('send the API key once: the Authorization or X-API-Key header appears more than once')
  }
  const headerKey = (apiKeyHeader as string | undefined)?.trim() || undefined
  let bearer: string | undefined
  if (authorization !== undefined && authorization.trim() !== '') {
    bearer = bearerToken(authorization)
    if (bearer === undefined) return keyRefusals.notBearer
  }
  if (bearer !== undefined && headerKey !== undefined && bearer !== headerKey) {
    return invalidRequest('send the API key in one header: Authorization and X-API-Key hold different values')
  }
  return bearer ?? headerKey
}

function sentTwice(rawHeaders: readonly string[]): boolean {
  let authorizations = 0
  let apiKeys = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string
    // The length test first: most header names are neither.
    if (name.length === 13 && name.toLowerCase() === 'authorization') authorizations++
    else if (name.length === 9 && name.toLowerCase() === 'x-api-key') apiKeys++
  }
  return authorizations > 1 || apiKeys > 1
}

/**
 * Step 3 of the order of checks, the key: 401 invalid_key, or 503 unavailable when the key store
 * cannot answer. A cached key is accepted at once (no promise). Every answer from here on carries
 * X-Key-Scopes (what the key holds), and no /v1 answer may be cached by an intermediary.
 */
export function authenticate(verifier: KeyVerifier): Step {
  return function authenticate(request, reply) {
    reply.header('cache-control', 'no-store')
    const credential = credentialOf(request)
    if (credential instanceof ApiError) return credential
    const verified = verifier.verify(credential)
    if (verified instanceof ApiError) return verified
    if (verified instanceof Promise) {
      return verified.then((key) => {
        request.apiKey = key
        reply.header('x-key-scopes', key.scopesHeader)
      })
    }
    request.apiKey = verified
    reply.header('x-key-scopes', verified.scopesHeader)
  }
}

/** The key of a request that passed `authenticate`. */
export function callerOf(request: FastifyRequest): VerifiedKey {
  if (request.apiKey === null) throw new Error('a /v1 handler ran without a verified key')
  return request.apiKey
}

/** What a studio call needs to know of the request: the caller's account and mode, and the request id. */
export function callContextOf(request: FastifyRequest): CallContext {
  const { accountId, mode } = callerOf(request)
  return { accountId, mode, requestId: request.id }
}
