import underPressure from '@fastify/under-pressure'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { guardMemoryUsage } from '../lib/descriptors.js'
import { unavailable } from '../lib/errors.js'
import type { Metrics, ShedReason } from '../lib/metrics.js'
import type { Step } from './run-steps.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The load as `@fastify/under-pressure` samples it, every SHED_SAMPLE_INTERVAL. */
    readonly load: LoadMonitor
  }
}

export interface LoadMonitor {
  /** The threshold the last sample is past, or undefined when the gateway is not overloaded. */
  overloadedBy(): { reason: ShedReason; value: number } | undefined
}

/** Seconds a shed client is asked to wait: about one sample of the load (SHED_SAMPLE_INTERVAL, 5 s by default). */
const SHED_RETRY_AFTER_SECONDS = 5

/** The resolution of `@fastify/under-pressure`'s event-loop delay histogram (fixed in the plugin). */
const HISTOGRAM_RESOLUTION_MS = 10

/** How often at most a shedding episode is logged: under overload, a line per request adds to it. */
const LOG_INTERVAL_MS = 10_000

/**
 * Samples the load with `@fastify/under-pressure`: event-loop delay (averaged over the sample
 * interval), heap used and RSS, each against its threshold (0 turns a check off). The plugin is
 * registered in a scope of its own that holds no route, so its own hook refuses nothing: shedding
 * is a step of the /v1 pipeline (`shedLoad`), in the place the order of checks gives it, and the
 * operators' endpoints are never shed.
 */
export const loadMonitor = fp<{ thresholds: Config['shedding'] }>(
  async function loadMonitor(app, { thresholds }) {
    // The plugin samples memory from a timer, with a call that throws when descriptors run out.
    guardMemoryUsage()
    let sampler: Pick<typeof app, 'isUnderPressure' | 'memoryUsage'> | undefined
    await app.register(async function sampling(scope) {
      await scope.register(underPressure, {
        sampleInterval: thresholds.sampleIntervalMs,
        maxEventLoopDelay: thresholds.maxEventLoopDelayMs,
        maxHeapUsedBytes: thresholds.maxHeapUsedBytes,
        maxRssBytes: thresholds.maxRssBytes,
      })
      sampler = { isUnderPressure: scope.isUnderPressure, memoryUsage: scope.memoryUsage }
    })
    const { isUnderPressure, memoryUsage } = sampler as NonNullable<typeof sampler>
    // The plugin's delay histogram ticks every 10 ms and needs two ticks to hold a value: a sample
    // window in which the loop never ticked twice is reported as an infinite delay. All it says is
    // that the loop was blocked for at least the window less those two ticks, which is the value
    // taken then. (Taken as infinite, a loop busy for 100 ms once, like the first request's
    // compilation on a loaded machine, shed the next window's requests whatever the threshold.)
    const blockedAtLeastMs = Math.max(0, thresholds.sampleIntervalMs - 2 * HISTOGRAM_RESOLUTION_MS)
    app.decorate('load', {
      overloadedBy() {
        if (!isUnderPressure()) return undefined
        const usage = memoryUsage()
        const delay = Number.isFinite(usage.eventLoopDelay) ? usage.eventLoopDelay : blockedAtLeastMs
        if (thresholds.maxEventLoopDelayMs > 0 && delay > thresholds.maxEventLoopDelayMs) {
          return { reason: 'event_loop_delay', value: delay }
        }
        if (thresholds.maxHeapUsedBytes > 0 && usage.heapUsed > thresholds.maxHeapUsedBytes) {
          return { reason: 'heap_used', value: usage.heapUsed }
        }
        if (thresholds.maxRssBytes > 0 && usage.rssBytes > thresholds.maxRssBytes) {
          return { reason: 'rss', value: usage.rssBytes }
        }
        return undefined
      },
    } satisfies LoadMonitor)
  },
  { name: 'load-monitor' },
)

/**
 * Step 2 of the order of checks: while the gateway is overloaded, 503 unavailable at once, before
 * any other work (the key is not even looked at).
 */
export function shedLoad(load: LoadMonitor, metrics: Metrics): Step {
  let lastLoggedAt = 0
  return function shedLoad(request) {
    const overload = load.overloadedBy()
    if (overload === undefined) return
    metrics.shed(overload.reason)
    const now = Date.now()
    if (now - lastLoggedAt >= LOG_INTERVAL_MS) {
      lastLoggedAt = now
      request.log.warn(overload, 'shedding load: refusing requests with 503 unavailable')
    }
    throw unavailable('the gateway is overloaded; retry with backoff', SHED_RETRY_AFTER_SECONDS)
  }
}
