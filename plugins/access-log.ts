import fp from 'fastify-plugin'
import { redactKeys } from '../lib/api-keys.js'

/**
 * One log line per request, at info: request id (the logger's binding), method, route, path,
 * status, duration and key id. Never a header, never the secret: a path is scrubbed of anything
 * shaped like a key, in case a client pasted one into a URL.
 */
const LOGS_INFO = new Set(['info', 'debug', 'trace'])

export default fp(
  async function accessLog(app) {
    app.addHook('onResponse', (request, reply, done) => {
      if (LOGS_INFO.has(request.log.level)) {
        request.log.info(
          {
            method: request.method,
            route: request.routeOptions.url ?? null,
            path: redactKeys(request.url),
            status: reply.statusCode,
            durationMs: Math.round(reply.elapsedTime * 100) / 100,
            keyId: request.apiKey?.id ?? null,
          },
          'request completed',
        )
      }
      done()
    })
  },
  { name: 'access-log' },
)
