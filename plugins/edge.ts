import fp from 'fastify-plugin'
import type { Edge } from '../lib/edge.js'
import { invalidRequest, unavailable } from '../lib/errors.js'
import { sendError } from './error-handler.js'

/** Node's own test for a 100-continue expectation: any other Expect reaches the gateway (lib/edge.ts). */
const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i

/** How often at most reaching the connection cap is logged: in a flood, every connection would. */
const LOG_INTERVAL_MS = 10_000

export interface EdgeOptions {
  readonly edge: Edge
}

/**
 * What the edge (lib/edge.ts) needs from Fastify, first thing for every request, known route or
 * not: a connection accepted past MAX_CONNECTIONS is answered 503 unavailable with Retry-After
 * (except the liveness probe, which must not turn a flood into a restart); an HTTP/1.1 request
 * without Host, or with an Expect the gateway cannot meet, is 400 invalid_request (Node would
 * answer both itself, outside the envelope). (An answer sent before its request has fully arrived
 * closes its connection: lib/edge.ts does that below Fastify, in the head of every answer.)
 */
export default fp<EdgeOptions>(
  async function edgeChecks(app, { edge }) {
    let lastLoggedAt = 0

    // Answered from the hook (a refusal must be cheap, and is not logged as a failure); done() is
    // then not called, so nothing else runs for the request.
    app.addHook('onRequest', (request, reply, done) => {
      const raw = request.raw
      if (edge.overCapacity(raw) && request.routeOptions.url !== '/healthz') {
        const now = Date.now()
        if (now - lastLoggedAt >= LOG_INTERVAL_MS) {
          lastLoggedAt = now
          request.log.warn(
            { openConnections: edge.openConnections, maxConnections: app.config.edge.maxConnections },
            'at the connection cap: answering new connections 503 unavailable',
          )
        }
        sendError(request, reply, unavailable('the gateway is at its connection limit; retry shortly'))
        return
      }
      if (raw.headers.host === undefined && raw.httpVersionMajor === 1 && raw.httpVersionMinor === 1) {
        sendError(request, reply, invalidRequest('an HTTP/1.1 request must carry a Host header'))
        return
      }
      const expect = raw.headers.expect
      if (expect !== undefined && !CONTINUE.test(expect)) {
        sendError(request, reply, invalidRequest('the only Expect the gateway meets is 100-continue'))
        return
      }
      done()
    })
  },
  // Before the errors plugin's hooks: a refused connection or a malformed request is answered as such, whatever its route.
  { name: 'edge', dependencies: ['request-id'] },
)
