import type { FastifyRequest } from 'fastify'
import type { Edge } from '../lib/edge.js'
import { type ApiError, invalidRequest, unavailable } from '../lib/errors.js'

/** Node's own test for a 100-continue expectation: any other Expect reaches the gateway (lib/edge.ts). */
const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i

/** How often at most reaching the connection cap is logged: in a flood, every connection would. */
const LOG_INTERVAL_MS = 10_000

export interface EdgeCheckOptions {
  readonly edge: Edge
  readonly maxConnections: number
}

/**
 * What the edge (lib/edge.ts) needs from Fastify, first thing for every request, known route or
 * not (run by pipeline/root.ts): a connection accepted past MAX_CONNECTIONS is answered 503
 * unavailable with Retry-After (except the liveness probe, which must not turn a flood into a
 * restart); an HTTP/1.1 request without Host, or with an Expect the gateway cannot meet, is 400
 * invalid_request (Node would answer both itself, outside the envelope). (An answer sent before its
 * request has fully arrived closes its connection: lib/edge.ts does that below Fastify, in the head
 * of every answer.) Returns the refusal, or nothing when the request may go on.
 */
export function createEdgeCheck({ edge, maxConnections }: EdgeCheckOptions) {
  let lastLoggedAt = 0
  return function checkEdge(request: FastifyRequest): ApiError | undefined {
    const raw = request.raw
    if (edge.overCapacity(raw) && request.routeOptions.url !== '/healthz') {
      const now = Date.now()
      if (now - lastLoggedAt >= LOG_INTERVAL_MS) {
        lastLoggedAt = now
        request.log.warn(
          { openConnections: edge.openConnections, maxConnections },
          'at the connection cap: answering new connections 503 unavailable',
        )
      }
      return unavailable('the gateway is at its connection limit; retry shortly')
    }
    if (raw.headers.host === undefined && raw.httpVersionMajor === 1 && raw.httpVersionMinor === 1) {
      return invalidRequest('an HTTP/1.1 request must carry a Host header')
    }
    const expect = raw.headers.expect
    if (expect !== undefined && !CONTINUE.test(expect)) {
      return invalidRequest('the only Expect the gateway meets is 100-continue')
    }
    return undefined
  }
}
