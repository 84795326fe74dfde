import { Counter, collectDefaultMetrics, Gauge, type Metric, Registry } from 'prom-client'
import type { Mode } from './api-keys.js'
import type { DependencyStatus } from './dependencies.js'
import { type ErrorCode, errorCodes } from './errors.js'

/**
 * The gateway's Prometheus metrics. Hot paths (every request, every error) only bump plain
 * numbers in maps; prom-client reads them when /metrics is scraped (its `collect` hook), so a
 * request pays a few map lookups and additions, not prom-client's per-call label hashing.
 * Plugins that keep their own counters (the key cache, the rate limiter) hand them over and
 * they are read at scrape time; others register their own prom-client metrics on `registry`.
 */

const PREFIX = 'studio_gateway_'

/** Latency buckets in seconds: fine below 25 ms, where a gateway's answers live. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** The route label of a request that matched no route: never the raw path, whose values are unbounded. */
export const UNMATCHED_ROUTE = 'unmatched'

export type RateLimiter = 'key' | 'ip'

/** What the rate limiter counts since start (its stats object satisfies this as it is). */
export interface RateLimitCounts {
  /** 429 answers by the budget that ran out: a key's, or a client IP's failed authentications. */
  readonly rejected: Readonly<Record<RateLimiter, number>>
  /** Counter operations answered by this instance's memory because Redis failed or was too slow. */
  readonly failOpen: number
  /** Times Redis became unreachable. */
  readonly outages: number
  /** Instances sharing the budgets, as last heard in Redis (1 without Redis). */
  readonly instances: number
}
export type ShedReason = 'event_loop_delay' | 'heap_used' | 'rss'

interface RequestSeries {
  readonly labels: { readonly method: string; readonly route: string; readonly status: string; readonly mode: Mode }
  count: number
  sumSeconds: number
  /** Counts per bucket (not cumulative); the last slot is +Inf. */
  readonly buckets: number[]
}

/**
 * Request counts and latencies by (mode, route, method, status): four map lookups and a bucket
 * search. The mode is `test` for requests made with a test key (the sandbox), `live` for the rest.
 */
function createRequestRecorder() {
  const byMode = { live: new Map(), test: new Map() } as Record<
    Mode,
    Map<string, Map<string, Map<number, RequestSeries>>>
  >

  function seriesFor(method: string, route: string, status: number, mode: Mode): RequestSeries {
    const byRoute = byMode[mode]
    let byMethod = byRoute.get(route)
    if (byMethod === undefined) {
      byMethod = new Map()
      byRoute.set(route, byMethod)
    }
    let byStatus = byMethod.get(method)
    if (byStatus === undefined) {
      byStatus = new Map()
      byMethod.set(method, byStatus)
    }
    let series = byStatus.get(status)
    if (series === undefined) {
      series = {
        labels: { method, route, status: String(status), mode },
        count: 0,
        sumSeconds: 0,
        buckets: new Array(LATENCY_BUCKETS.length + 1).fill(0),
      }
      byStatus.set(status, series)
    }
    return series
  }

  return {
    record(method: string, route: string, status: number, durationMs: number, mode: Mode) {
      const series = seriesFor(method, route, status, mode)
      const seconds = durationMs / 1000
      let bucket = 0
      while (bucket < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[bucket] as number)) bucket++
      series.buckets[bucket] = (series.buckets[bucket] as number) + 1
      series.count++
      series.sumSeconds += seconds
    },

    *series(): Generator<RequestSeries> {
      for (const byRoute of Object.values(byMode)) {
        for (const byMethod of byRoute.values()) {
          for (const byStatus of byMethod.values()) yield* byStatus.values()
        }
      }
    },

    reset() {
      for (const byRoute of Object.values(byMode)) byRoute.clear()
    },
  }
}

type RequestRecorder = ReturnType<typeof createRequestRecorder>

/**
 * The request-duration histogram, read from the recorder at scrape time. prom-client's Histogram
 * has no way to be fed pre-counted buckets, so this implements the contract its registry reads
 * (`get()` returning the same shape as its own histograms).
 */
function requestDurationHistogram(recorder: RequestRecorder) {
  const name = `${PREFIX}http_request_duration_seconds`
  const metric = {
    name,
    help: 'Time from the request arriving to the response being sent, by method, route pattern, status and mode (live or test).',
    type: 'histogram' as const,
    aggregator: 'sum' as const,
    labelNames: ['method', 'route', 'status', 'mode'],
    async get() {
      const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = []
      for (const series of recorder.series()) {
        let cumulative = 0
        LATENCY_BUCKETS.forEach((bound, index) => {
          cumulative += series.buckets[index] as number
          values.push({ metricName: `${name}_bucket`, labels: { ...series.labels, le: bound }, value: cumulative })
        })
        values.push({ metricName: `${name}_bucket`, labels: { ...series.labels, le: '+Inf' }, value: series.count })
        values.push({ metricName: `${name}_sum`, labels: series.labels, value: series.sumSeconds })
        values.push({ metricName: `${name}_count`, labels: series.labels, value: series.count })
      }
      return { name, help: metric.help, type: metric.type, aggregator: metric.aggregator, values }
    },
    reset() {
      recorder.reset()
    },
  }
  return metric as unknown as Metric
}

/** A counter by one label, bumped on hot paths in a map and copied into prom-client at scrape time. */
function tally<L extends string>(registry: Registry, name: string, help: string, label: string, initial: L[] = []) {
  const counts = new Map<string, number>(initial.map((value) => [value, 0]))
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset()
      for (const [value, count] of counts) this.inc({ [label]: value }, count)
    },
  })
  return {
    inc(value: L) {
      counts.set(value, (counts.get(value) ?? 0) + 1)
    },
    /** Shows the series at 0 before its first event, so rates and alerts see it from the start. */
    ensure(value: L) {
      if (!counts.has(value)) counts.set(value, 0)
    },
  }
}

/**
 * A counter whose values are numbers kept elsewhere (a plugin's own stats object), read at scrape
 * time: one value, or one per label value when `label` is given.
 */
function counterFrom(
  registry: Registry,
  name: string,
  help: string,
  read: () => number | Readonly<Record<string, number>>,
  label?: string,
) {
  new Counter({
    name,
    help,
    labelNames: label === undefined ? [] : [label],
    registers: [registry],
    collect() {
      this.reset()
      const values = read()
      if (typeof values === 'number') this.inc(values)
      else for (const [value, count] of Object.entries(values)) this.inc({ [label as string]: value }, count)
    },
  })
}

// Process metrics (CPU, memory, event loop lag, GC) describe the process, not one app: one set per
// process, however many apps the tests build, each with its own registry for the rest.
let processRegistry: Registry | undefined
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

export interface MetricsOptions {
  /** The key verification cache's counters, read at scrape time. */
  readonly keyCache: { readonly hits: number; readonly misses: number }
}

export function createMetrics(options: MetricsOptions) {
  const registry = new Registry()
  const recorder = createRequestRecorder()

  new Counter({
    name: `${PREFIX}http_requests_total`,
    help: 'Requests answered, by method, route pattern, status and mode (live, or test for test keys).',
    labelNames: ['method', 'route', 'status', 'mode'],
    registers: [registry],
    collect() {
      this.reset()
      for (const series of recorder.series()) this.inc(series.labels, series.count)
    },
  })
  registry.registerMetric(requestDurationHistogram(recorder))

  const simulatedErrorSent = tally<ErrorCode>(
    registry,
    `${PREFIX}simulated_errors_total`,
    'Errors answered on demand to test keys (Simulate-Error), by error code; not counted in errors_total.',
    'code',
    errorCodes,
  )
  const errorSent = tally<ErrorCode>(
    registry,
    `${PREFIX}errors_total`,
    'Error envelopes sent, by error code.',
    'code',
    errorCodes,
  )

  counterFrom(
    registry,
    `${PREFIX}key_cache_hits_total`,
    'API key verifications answered from the in-memory cache.',
    () => options.keyCache.hits,
  )
  counterFrom(
    registry,
    `${PREFIX}key_cache_misses_total`,
    'API key verifications that went to the key store.',
    () => options.keyCache.misses,
  )

  const dependencyFailed = tally<string>(
    registry,
    `${PREFIX}dependency_check_failures_total`,
    'Failed dependency checks (readiness probes), by dependency.',
    'dependency',
  )
  const dependencyUp = new Gauge({
    name: `${PREFIX}dependency_up`,
    help: 'Result of the last check of each dependency: 1 up, 0 down.',
    labelNames: ['dependency'],
    registers: [registry],
  })

  let rateLimit: RateLimitCounts = { rejected: { key: 0, ip: 0 }, failOpen: 0, outages: 0, instances: 1 }
  new Gauge({
    name: `${PREFIX}rate_limit_instances`,
    help: 'Instances sharing the rate-limit budgets, as last heard in Redis: while Redis is down, each enforces budget / this.',
    registers: [registry],
    collect() {
      this.set(rateLimit.instances)
    },
  })
  counterFrom(
    registry,
    `${PREFIX}rate_limit_rejections_total`,
    'Requests refused with 429 rate_limited, by limiter: key (per API key) or ip (failed authentication per client IP).',
    () => rateLimit.rejected,
    'limiter',
  )
  counterFrom(
    registry,
    `${PREFIX}rate_limit_fail_open_total`,
    'Rate-limit counter operations answered by the per-instance fallback because the shared store (Redis) failed or was too slow.',
    () => rateLimit.failOpen,
  )
  counterFrom(
    registry,
    `${PREFIX}rate_limit_redis_outages_total`,
    'Times the shared rate-limit store (Redis) became unreachable, so limiting failed open to per-instance counters.',
    () => rateLimit.outages,
  )

  const shed = tally<ShedReason>(
    registry,
    `${PREFIX}shed_requests_total`,
    'Requests refused with 503 unavailable by load shedding, by the threshold that was exceeded.',
    'reason',
    ['event_loop_delay', 'heap_used', 'rss'],
  )

  return {
    /** This app's metrics; register more prom-client metrics here (`registers: [metrics.registry]`). */
    registry,

    /**
     * One answered request. `route` is the route pattern (`/v1/studios/:studioId`), never the raw
     * URL; `mode` is `test` when a test key made it.
     */
    recordRequest: recorder.record,

    /** An error envelope was sent with this code. */
    errorSent: errorSent.inc,

    /** A test key's simulated error (Simulate-Error) was answered with this code: not a fault. */
    simulatedErrorSent: simulatedErrorSent.inc,

    /** A dependency check finished (the dependency registry reports every one). */
    dependencyChecked(status: DependencyStatus) {
      if (status.ok) dependencyFailed.ensure(status.name)
      else dependencyFailed.inc(status.name)
      dependencyUp.set({ dependency: status.name }, status.ok ? 1 : 0)
    },

    /** The rate limiter's own counters (it keeps them as plain numbers), read at each scrape. */
    readRateLimitFrom(counts: RateLimitCounts) {
      rateLimit = counts
    },

    /** A request was refused by load shedding. */
    shed: shed.inc,

    /** The exposition text: this app's metrics, then the process's. */
    async render(): Promise<string> {
      const [own, process] = await Promise.all([registry.metrics(), processMetrics().metrics()])
      return `${own}\n${process}`
    },

    contentType: registry.contentType,
  }
}

export type Metrics = ReturnType<typeof createMetrics>
