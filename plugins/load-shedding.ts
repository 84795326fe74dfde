import underPressure from '@fastify/under-pressure'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { guardMemoryUsage } from '../lib/descriptors.js'
import { type ApiError, unavailable } from '../lib/errors.js'
import type { ShedReason } from '../lib/metrics.js'

/** Seconds a shed client is asked to wait: about one sample of the load (SHED_SAMPLE_INTERVAL, 5 s by default). */
export const SHED_RETRY_AFTER_SECONDS = 5

/** How often at most a shedding episode is logged: under overload, a line per request adds to it. */
const LOG_INTERVAL_MS = 10_000

const reasons: Record<string, ShedReason> = {
  [underPressure.TYPE_EVENT_LOOP_DELAY]: 'event_loop_delay',
  [underPressure.TYPE_HEAP_USED_BYTES]: 'heap_used',
  [underPressure.TYPE_RSS_BYTES]: 'rss',
}

export interface LoadSheddingOptions {
  readonly thresholds: Config['shedding']
  /** Run before a request is refused (the rate limiter shows the client IP's budget on it). */
  readonly beforeRefusing?: (request: FastifyRequest, reply: FastifyReply, error: ApiError) => Promise<void>
}

/**
 * Load shedding for the scope it is registered in (the /v1 scope, ahead of the key check): while
 * the event loop lags, or the heap or RSS is past its threshold (sampled every
 * SHED_SAMPLE_INTERVAL by `@fastify/under-pressure`), requests are refused at once with 503
 * unavailable in the envelope, before any other work. Never the plugin's own body: its pressure
 * handler rejects with our error, which the error handler renders.
 */
export default fp<LoadSheddingOptions>(
  async function loadShedding(app, { thresholds, beforeRefusing }) {
    let lastLoggedAt = 0
    // The plugin samples memory from a timer, with a call that throws when descriptors run out.
    guardMemoryUsage()
    await app.register(underPressure, {
      sampleInterval: thresholds.sampleIntervalMs,
      maxEventLoopDelay: thresholds.maxEventLoopDelayMs,
      maxHeapUsedBytes: thresholds.maxHeapUsedBytes,
      maxRssBytes: thresholds.maxRssBytes,
      pressureHandler: async (request, reply, type, value) => {
        const reason = reasons[type] ?? 'event_loop_delay'
        app.metrics.shed(reason)
        const now = Date.now()
        if (now - lastLoggedAt >= LOG_INTERVAL_MS) {
          lastLoggedAt = now
          request.log.warn({ reason, value }, 'shedding load: refusing requests with 503 unavailable')
        }
        const error = unavailable('the gateway is overloaded; retry with backoff', SHED_RETRY_AFTER_SECONDS)
        await beforeRefusing?.(request, reply, error)
        // A rejected promise makes the plugin hand the error to Fastify, hence to our error handler.
        throw error
      },
    })
  },
  { name: 'load-shedding', dependencies: ['errors'] },
)
