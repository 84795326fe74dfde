import underPressure from '@fastify/under-pressure'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { unavailable } from '../lib/errors.js'
import type { ShedReason } from '../lib/metrics.js'

type PressureHandler = (request: FastifyRequest, reply: FastifyReply, type: string, value: number | undefined) => void

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Read by `@fastify/under-pressure`: a route's own answer to pressure (`exemptFromShedding`). */
    pressureHandler?: PressureHandler
  }
}

/** Seconds a shed client is asked to wait: about one sample of the load (SHED_SAMPLE_INTERVAL, 5 s by default). */
export const SHED_RETRY_AFTER_SECONDS = 5

/** How often at most a shedding episode is logged: under overload, a line per request adds to it. */
const LOG_INTERVAL_MS = 10_000

const reasons: Record<string, ShedReason> = {
  [underPressure.TYPE_EVENT_LOOP_DELAY]: 'event_loop_delay',
  [underPressure.TYPE_HEAP_USED_BYTES]: 'heap_used',
  [underPressure.TYPE_RSS_BYTES]: 'rss',
}

/**
 * The route config of a route that keeps answering under pressure (the probes and /metrics): a
 * pressure handler that returns nothing lets the request through.
 */
export const exemptFromShedding: { pressureHandler: PressureHandler } = { pressureHandler: () => undefined }

/**
 * Load shedding: while the event loop lags, or the heap or RSS is past its threshold (sampled
 * every SHED_SAMPLE_INTERVAL by `@fastify/under-pressure`), requests are refused at once with 503 unavailable in
 * the envelope, before any other work (key lookup included). Never the plugin's own body: its
 * pressure handler rejects with our error, which the error handler renders.
 */
export default fp<{ thresholds: Config['shedding'] }>(
  async function loadShedding(app, { thresholds }) {
    let lastLoggedAt = 0
    await app.register(underPressure, {
      sampleInterval: thresholds.sampleIntervalMs,
      maxEventLoopDelay: thresholds.maxEventLoopDelayMs,
      maxHeapUsedBytes: thresholds.maxHeapUsedBytes,
      maxRssBytes: thresholds.maxRssBytes,
      pressureHandler: (request, _reply, type, value) => {
        const reason = reasons[type] ?? 'event_loop_delay'
        app.metrics.shed(reason)
        const now = Date.now()
        if (now - lastLoggedAt >= LOG_INTERVAL_MS) {
          lastLoggedAt = now
          request.log.warn({ reason, value }, 'shedding load: refusing requests with 503 unavailable')
        }
        // A rejected promise makes the plugin hand the error to Fastify, hence to our error handler.
        return Promise.reject(
          unavailable('the gateway is overloaded; retry with backoff', SHED_RETRY_AFTER_SECONDS),
        ) as Promise<void>
      },
    })
  },
  { name: 'load-shedding', dependencies: ['errors'] },
)
