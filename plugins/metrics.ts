import fp from 'fastify-plugin'
import { UNMATCHED_ROUTE } from '../lib/metrics.js'

/**
 * Records every answered request (count and latency by method, route pattern and status) into
 * `app.metrics`. The route is the pattern the router matched, never the URL: raw paths would
 * make one series per studio id and per scanner's guess.
 */
export default fp(
  async function metrics(app) {
    const { metrics } = app
    app.addHook('onResponse', (request, reply, done) => {
      metrics.recordRequest(
        request.method,
        request.routeOptions.url ?? UNMATCHED_ROUTE,
        reply.statusCode,
        reply.elapsedTime,
      )
      done()
    })
  },
  { name: 'metrics' },
)
