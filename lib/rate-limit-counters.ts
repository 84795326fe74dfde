import { createRequire } from 'node:module'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis, RedisOptions } from 'ioredis'
import { withDeadline } from './deadline.js'

/**
 * The counters behind the rate limits: in memory per instance, or in Redis (REDIS_URL) so every
 * instance shares one budget per key. Redis down or slow fails open to the in-memory counters of
 * this instance, so the limiter never hangs a request and never turns into a 500.
 */

interface CounterResult {
  current: number
  /** Milliseconds until the window resets. */
  ttl: number
}
type CounterCallback = (error: Error | null, result?: CounterResult) => void

/** The store contract of @fastify/rate-limit (`incr`, the non-mutating `read`, and `child`). */
interface PluginStore {
  incr(key: string, callback: CounterCallback, timeWindow: number, max: number): void
  read(key: string, callback: CounterCallback, timeWindow: number, max: number): void
  child(routeOptions: unknown): PluginStore
}

// The plugin's own stores (its index does not export them): the fixed-window LRU, and the Redis
// one whose Lua script INCRs and PEXPIREs atomically. Reused rather than written twice.
const require = createRequire(import.meta.url)
const LocalStore = require('@fastify/rate-limit/store/LocalStore.js') as new (
  continueExceeding: boolean,
  exponentialBackoff: boolean,
  cache?: number,
) => PluginStore
const RedisStore = require('@fastify/rate-limit/store/RedisStore.js') as new (
  continueExceeding: boolean,
  exponentialBackoff: boolean,
  redis: Redis,
  nameSpace: string,
) => PluginStore

/** ioredis rejects a command that gets no answer in this time, so stalled commands do not pile up. */
const REDIS_COMMAND_TIMEOUT_MS = 100
/**
 * The limiter's own bound on a Redis decision: past it, this request is counted in memory whatever
 * Redis does later. A little above the command timeout, which it backs (a script may take two
 * commands: EVALSHA, then EVAL after a Redis restart).
 */
const REDIS_DECISION_DEADLINE_MS = 150
/** How long a connection attempt may take (at start, and each reconnection). */
const REDIS_CONNECT_TIMEOUT_MS = 500
/** While Redis is down, how often it is probed to detect its return (besides ioredis' own reconnects). */
const PROBE_INTERVAL_MS = 1000
/** Counters kept in memory per limiter; the least recently used beyond that are forgotten. */
const LOCAL_COUNTERS = 100_000

/**
 * ioredis' defaults queue commands while disconnected and retry them, so a request would wait for
 * Redis instead of failing over. Here a command is never queued nor retried, and is bounded.
 */
const REDIS_OPTIONS: RedisOptions = {
  lazyConnect: true,
  connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
  commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  // Reconnect forever, at most a second apart, so service recovers soon after Redis returns.
  retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
}

/**
 * What the limiter has done since start, for metrics (issue: operations) and operators. Counters
 * only grow; `redisReachable` is the current state (null without REDIS_URL).
 */
export interface RateLimitStats {
  /** Where the counters live: `memory` (no REDIS_URL) or `redis`. */
  readonly store: 'memory' | 'redis'
  redisReachable: boolean | null
  /** 429 answers, by the budget that ran out: a key's, or a client IP's failures. */
  readonly rejected: { key: number; ip: number }
  /** Counter operations answered by this instance's memory because Redis failed or was down. */
  failOpen: number
  /** Times Redis became unreachable (each is logged once, and its recovery once). */
  outages: number
}

export interface RateLimitCountersOptions {
  readonly redisUrl: string | undefined
  /** Prefix of the Redis keys (REDIS_KEY_PREFIX); counters live under `<prefix>rate-limit:`. */
  readonly keyPrefix: string
  readonly log: FastifyBaseLogger
}

export async function createRateLimitCounters(options: RateLimitCountersOptions) {
  const { log } = options
  // ioredis is loaded only with REDIS_URL: without it, it would hold memory for nothing.
  const redis =
    options.redisUrl === undefined ? undefined : new (await import('ioredis')).Redis(options.redisUrl, REDIS_OPTIONS)
  const stats: RateLimitStats = {
    store: redis ? 'redis' : 'memory',
    redisReachable: redis ? true : null,
    rejected: { key: 0, ip: 0 },
    failOpen: 0,
    outages: 0,
  }
  const namespace = `${options.keyPrefix}rate-limit:`
  // The probe runs the limiter's own script, so "reachable" means "can count", not just "answers PING".
  const probeStore = redis ? new RedisStore(false, false, redis, namespace) : undefined
  let probe: NodeJS.Timeout | undefined
  let closed = false

  /** One counter operation against Redis, bounded by the decision deadline. */
  function viaRedis(
    store: PluginStore,
    method: 'incr' | 'read',
    key: string,
    timeWindow: number,
    max: number,
  ): Promise<CounterResult> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no answer within ${REDIS_DECISION_DEADLINE_MS} ms`)),
        REDIS_DECISION_DEADLINE_MS,
      )
      store[method](
        key,
        (error, result) => {
          clearTimeout(timer)
          if (error || !result) reject(error ?? new Error('Redis returned no counter'))
          else resolve(result)
        },
        timeWindow,
        max,
      )
    })
  }

  async function probeRedis(): Promise<void> {
    if (probeStore) await viaRedis(probeStore, 'incr', 'probe', 1000, 1)
  }

  function markDown(error: unknown) {
    if (!redis || closed || stats.redisReachable === false) return
    stats.redisReachable = false
    stats.outages++
    log.warn(
      { err: { message: describe(error) } },
      'Redis is unreachable: rate limits fall back to per-instance counters until it returns',
    )
    probe = setInterval(() => {
      probeRedis().then(markUp, () => {})
    }, PROBE_INTERVAL_MS)
    probe.unref()
  }

  function markUp() {
    if (closed || stats.redisReachable !== false) return
    stats.redisReachable = true
    clearInterval(probe)
    probe = undefined
    log.info('Redis is reachable again: rate limits are shared across instances again')
  }

  // ioredis reports every failed reconnection here; the outage itself is logged once, above.
  redis?.on('error', (error: Error) => log.debug({ err: { message: error.message } }, 'Redis connection error'))
  // A reconnection ends the outage at once; the probe covers a connection that stalled and resumed.
  redis?.on('ready', () => {
    probeRedis().then(markUp, () => {})
  })

  /**
   * A store for @fastify/rate-limit. Each limiter (`createRateLimit`) gets a child with its own
   * in-memory counters; all share the Redis connection and its health.
   */
  class FailoverStore implements PluginStore {
    private readonly local = new LocalStore(false, false, LOCAL_COUNTERS)
    private readonly remote = redis ? new RedisStore(false, false, redis, namespace) : undefined

    incr(key: string, callback: CounterCallback, timeWindow: number, max: number) {
      this.run('incr', key, callback, timeWindow, max)
    }

    read(key: string, callback: CounterCallback, timeWindow: number, max: number) {
      this.run('read', key, callback, timeWindow, max)
    }

    child(): PluginStore {
      return new FailoverStore()
    }

    private run(method: 'incr' | 'read', key: string, callback: CounterCallback, timeWindow: number, max: number) {
      if (!this.remote) return this.local[method](key, callback, timeWindow, max)
      if (stats.redisReachable === false) {
        stats.failOpen++
        return this.local[method](key, callback, timeWindow, max)
      }
      viaRedis(this.remote, method, key, timeWindow, max).then(
        (result) => callback(null, result),
        (error: unknown) => {
          markDown(error)
          stats.failOpen++
          this.local[method](key, callback, timeWindow, max)
        },
      )
    }
  }

  return {
    stats,
    /** The store class to give @fastify/rate-limit (it instantiates it). */
    Store: FailoverStore,
    /** Whether counters go to Redis: then readiness has a check for it. */
    usesRedis: redis !== undefined,

    /** Connects to Redis, waiting at most the connect timeout: if it is down, start failed open. */
    async connect() {
      if (!redis) return
      try {
        await withDeadline(
          redis.connect(),
          REDIS_CONNECT_TIMEOUT_MS,
          () => new Error('no connection within the connect timeout'),
        )
      } catch (error) {
        markDown(error)
      }
    },

    /** The readiness check: rejects while Redis does not answer (limits are then per instance). */
    async check() {
      if (!redis) return
      try {
        await probeRedis()
      } catch (error) {
        markDown(error)
        throw new Error(
          `Redis is unreachable (${describe(error)}): rate limits are counted per instance until it returns`,
        )
      }
      markUp()
    },

    async close() {
      closed = true
      clearInterval(probe)
      if (!redis) return
      try {
        await redis.quit()
      } catch {
        redis.disconnect()
      }
    },
  }
}

export type RateLimitCounters = Awaited<ReturnType<typeof createRateLimitCounters>>

/** A short reason, never the URL (it can hold a password). */
function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  if (/enableOfflineQueue|Connection is closed|MaxRetriesPerRequest/i.test(message)) return 'not connected'
  if (/timed out/i.test(message)) return `no answer within ${REDIS_COMMAND_TIMEOUT_MS} ms`
  return message.slice(0, 200)
}
