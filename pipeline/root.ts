import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Edge } from '../lib/edge.js'
import { answerUnknownRoute, sendError } from '../plugins/error-handler.js'
import { createEdgeCheck } from './edge.js'
import { stampRequest } from './request-id.js'

export interface RootStepsOptions {
  readonly edge: Edge
  readonly maxConnections: number
  /** Run before an unknown route's 404 is answered (the client IP's failure budget); may reject with its 429. */
  readonly onUnknownRoute: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
}

/**
 * The first steps of the order of checks, for every request, known route or not, in one
 * onRequest hook (the /v1 steps follow in pipeline/index.ts):
 *
 *    1. request id      X-Request-Id and nosniff on every answer        stampRequest (pipeline/request-id.ts)
 *    1b. edge           503 at the connection cap, 400 without Host or  checkEdge (pipeline/edge.ts)
 *                       with an Expect other than 100-continue
 *    1c. unknown route  404 not_found, before the body is read; the     answerUnknownRoute
 *                       client IP's failure budget is spent first (429)  (plugins/error-handler.ts)
 *
 * A refusal is answered from the hook (it is expected, and needs no log line); done() is then not
 * called, so nothing else runs for the request. Only a spent failure budget (the 429 of an unknown
 * route) goes through Fastify's error path.
 */
export default fp<RootStepsOptions>(
  async function rootSteps(app, { edge, maxConnections, onUnknownRoute }) {
    const checkEdge = createEdgeCheck({ edge, maxConnections })
    app.addHook('onRequest', function everyRequest(request, reply, done) {
      stampRequest(request, reply)
      const refusal = checkEdge(request)
      if (refusal !== undefined) {
        sendError(request, reply, refusal)
        return
      }
      if (!request.is404) {
        done()
        return
      }
      onUnknownRoute(request, reply).then(() => answerUnknownRoute(request, reply), done)
    })
  },
  { name: 'root-steps', dependencies: ['error-handler'] },
)
