import type { IncomingMessage } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { holdsKeyPrefix } from '../lib/api-keys.js'
import { CLIENT_REQUEST_ID_PATTERN, newRequestId } from '../lib/ids.js'

const CLIENT_REQUEST_ID = new RegExp(CLIENT_REQUEST_ID_PATTERN)

/**
 * Fastify's `genReqId`. Fastify's own `requestIdHeader` stays off: it trusts any value, and a
 * request id lands in logs and headers, so only a safe one is echoed; anything else (too long,
 * spaces, control characters, a duplicated header joined with a comma) is replaced. So is an id
 * holding an API key (`sk_live_…`, `sk_test_…`): echoing it would copy a secret into every log line.
 */
export function genReqId(raw: IncomingMessage): string {
  const sent = raw.headers['x-request-id']
  return typeof sent === 'string' && CLIENT_REQUEST_ID.test(sent) && !holdsKeyPrefix(sent) ? sent : newRequestId()
}

/**
 * Step 1 of the order of checks, on every request (known route or not): every answer carries
 * X-Request-Id (Fastify does not echo it) and nosniff. Run by pipeline/root.ts.
 */
export function stampRequest(request: FastifyRequest, reply: FastifyReply): void {
  reply.header('x-request-id', request.id)
  reply.header('x-content-type-options', 'nosniff')
}
