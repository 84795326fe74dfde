import { hostname } from 'node:os'
import fp from 'fastify-plugin'
import { levels } from 'pino'
import { redactKeys } from '../lib/api-keys.js'
import { UNMATCHED_ROUTE } from '../lib/metrics.js'

export interface ObserveOptions {
  /** Where the log's lines go (the logger's own destination): the access log is written there too. */
  readonly destination: { write(line: string): unknown }
}

const INFO = levels.values.info as number

/**
 * What every answered request leaves behind, from one onResponse hook:
 *   - metrics: count and latency by method, route pattern, status and mode (the pattern the router
 *     matched, never the URL: raw paths would make one series per studio id and scanner's guess);
 *   - the access log, one line per request at info: request id, method, route, path (scrubbed of
 *     anything shaped like a key, in any percent-encoding), status, duration, key id and mode
 *     (`test` for a test key's requests, else `live`); never a header, never a secret.
 *
 * The access-log line is serialized here, as pino writes its lines (level, time, pid, hostname,
 * the request id, the fields, msg), and handed to the logger's destination: its fields are known,
 * so it needs neither a child logger nor generic object serialization and redaction.
 */
export default fp<ObserveOptions>(
  async function observe(app, { destination }) {
    const { metrics } = app
    const rootLevel = app.log.level
    const prefix = `{"level":${INFO},"time":`
    const origin = `,"pid":${process.pid},"hostname":${JSON.stringify(hostname())},"requestId":`

    app.addHook('onResponse', (request, reply, done) => {
      const route = request.routeOptions
      const elapsed = reply.elapsedTime
      const mode = request.apiKey?.mode ?? 'live'
      metrics.recordRequest(request.method, route.url ?? UNMATCHED_ROUTE, reply.statusCode, elapsed, mode)
      // A route may log at its own level (the operators' endpoints log at warn).
      if ((levels.values[route.logLevel || rootLevel] ?? Number.POSITIVE_INFINITY) <= INFO) {
        destination.write(
          `${prefix}${Date.now()}${origin}${JSON.stringify(request.id)},"method":${JSON.stringify(request.method)},` +
            `"route":${route.url === undefined ? 'null' : JSON.stringify(route.url)},` +
            `"path":${JSON.stringify(redactKeys(request.url))},"status":${reply.statusCode},` +
            `"durationMs":${Math.round(elapsed * 100) / 100},` +
            `"keyId":${request.apiKey ? JSON.stringify(request.apiKey.id) : 'null'},"mode":"${mode}","msg":"request completed"}\n`,
        )
      }
      done()
    })
  },
  { name: 'observe' },
)
