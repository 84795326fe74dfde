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
        // Only the path is the client's free text and needs JSON escaping. The request id is
        // generated or matched [A-Za-z0-9._:-] (pipeline/request-id.ts), a method is a token of
        // Node's parser, a route is one of ours, a key id is `key_` and base62: none holds a
        // character JSON would escape.
        destination.write(
          `${prefix}${Date.now()}${origin}"${request.id}","method":"${request.method}",` +
            `"route":${route.url === undefined ? 'null' : `"${route.url}"`},` +
            `"path":${JSON.stringify(redactKeys(request.url))},"status":${reply.statusCode},` +
            `"durationMs":${Math.round(elapsed * 100) / 100},` +
            `"keyId":${request.apiKey ? `"${request.apiKey.id}"` : 'null'},"mode":"${mode}","msg":"request completed"}\n`,
        )
      }
      done()
    })
  },
  { name: 'observe' },
)
