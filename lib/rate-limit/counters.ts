import { randomBytes } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis, RedisOptions } from 'ioredis'
import { withDeadline } from '../deadline.js'
import {
  createMemoryWindows,
  type Decision,
  type RatePolicy,
  redisDecision,
  SLIDING_WINDOW_SCRIPT,
  SLOTS,
} from './sliding-window.js'

/**
 * Where rate-limit decisions are made: in this process's memory, or in Redis (REDIS_URL) so every
 * instance shares one budget per key, exactly. Redis down or slow fails over to this instance's
 * memory, with its share of each budget: the budget divided by the instances that were alive
 * (each instance announces itself in Redis every second while it is up). A decision never hangs a
 * request and never turns into a 500.
 */

/** ioredis rejects a command that gets no answer in this time, so stalled commands do not pile up. */
const REDIS_COMMAND_TIMEOUT_MS = 100
/**
 * The limiter's own bound on a Redis decision: past it, this request is decided in memory whatever
 * Redis does later. A little above the command timeout, which it backs (a script may take two
 * commands: EVALSHA, then EVAL after a Redis restart).
 */
const REDIS_DECISION_DEADLINE_MS = 150
/** How long a connection attempt may take (at start, and each reconnection). */
const REDIS_CONNECT_TIMEOUT_MS = 500
/** How often an instance announces itself (and, while Redis is down, probes it). */
const HEARTBEAT_INTERVAL_MS = 1000
/** An instance not heard from for this long no longer counts among the alive ones. */
const INSTANCE_TTL_MS = 5000

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

/** Announces this instance and answers how many are alive, on Redis's clock. */
const HEARTBEAT_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
`

type ScriptedRedis = Redis & {
  slidingWindow(...args: (string | number)[]): Promise<number[]>
  heartbeat(key: string, instance: string, ttlMs: number): Promise<number>
}

/**
 * What the limiter has done since start, for metrics and operators. Counters only grow;
 * `redisReachable` and `instances` are the current state.
 */
export interface RateLimitStats {
  /** Where the counters live: `memory` (no REDIS_URL) or `redis`. */
  readonly store: 'memory' | 'redis'
  redisReachable: boolean | null
  /** Instances sharing the budgets, as last heard in Redis (1 without Redis). */
  instances: number
  /** 429 answers, by the budget that ran out: a key's, or a client IP's failures. */
  readonly rejected: { key: number; ip: number }
  /** Decisions made by this instance's memory because Redis failed or was down. */
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
  const memory = createMemoryWindows()
  // ioredis is loaded only with REDIS_URL: without it, it would hold memory for nothing.
  const redis =
    options.redisUrl === undefined
      ? undefined
      : (new (await import('ioredis')).Redis(options.redisUrl, REDIS_OPTIONS) as ScriptedRedis)
  redis?.defineCommand('slidingWindow', { lua: SLIDING_WINDOW_SCRIPT })
  redis?.defineCommand('heartbeat', { lua: HEARTBEAT_SCRIPT, numberOfKeys: 1 })
  const stats: RateLimitStats = {
    store: redis ? 'redis' : 'memory',
    redisReachable: redis ? true : null,
    instances: 1,
    rejected: { key: 0, ip: 0 },
    failOpen: 0,
    outages: 0,
  }
  const namespace = `${options.keyPrefix}rate-limit:`
  const instancesKey = `${options.keyPrefix}instances`
  const instanceId = randomBytes(8).toString('hex')
  let heartbeat: NodeJS.Timeout | undefined
  let closed = false

  /** Announces this instance; resolves once Redis answered, with the count of alive instances. */
  async function beat(): Promise<void> {
    if (!redis) return
    const alive = await withDeadline(
      redis.heartbeat(instancesKey, instanceId, INSTANCE_TTL_MS),
      REDIS_DECISION_DEADLINE_MS,
      () => new Error(`no answer within ${REDIS_DECISION_DEADLINE_MS} ms`),
    )
    stats.instances = Math.max(1, Number(alive))
  }

  function markDown(error: unknown) {
    if (!redis || closed || stats.redisReachable === false) return
    stats.redisReachable = false
    stats.outages++
    log.warn(
      { err: { message: describe(error) }, instances: stats.instances },
      'Redis is unreachable: rate limits fall back to per-instance shares until it returns',
    )
  }

  function markUp() {
    if (closed || stats.redisReachable !== false) return
    stats.redisReachable = true
    log.info('Redis is reachable again: rate limits are shared across instances again')
  }

  // The heartbeat is also the probe: while Redis is down, its success ends the outage.
  const tick = () => {
    beat().then(markUp, markDown)
  }

  // ioredis reports every failed reconnection here; the outage itself is logged once, above.
  redis?.on('error', (error: Error) => log.debug({ err: { message: error.message } }, 'Redis connection error'))
  // A reconnection ends the outage at once; the heartbeat covers a connection that stalled and resumed.
  redis?.on('ready', tick)

  /** This instance's share of each policy while Redis is down. */
  function shares(policies: readonly RatePolicy[]): RatePolicy[] {
    return policies.map((policy) => ({ ...policy, max: Math.max(1, Math.floor(policy.max / stats.instances)) }))
  }

  function inMemory(partition: string, policies: readonly RatePolicy[], increment: boolean): Decision {
    stats.failOpen++
    return memory.decide(partition, shares(policies), increment)
  }

  /**
   * Requests of one partition waiting for Redis, decided together by one script call at the end of
   * this turn of the event loop (see SLIDING_WINDOW_SCRIPT): one round trip for all the requests
   * of a key that arrived together instead of one each, and the same decisions, in the same order.
   */
  interface Batch {
    readonly partition: string
    readonly policies: readonly RatePolicy[]
    readonly increment: boolean
    readonly waiting: Array<{ resolve(decision: Decision): void }>
  }
  let batches = new Map<string, Batch>()
  let flushing = false

  function flush() {
    flushing = false
    const due = batches
    batches = new Map()
    for (const batch of due.values()) send(batch)
  }

  function send(batch: Batch) {
    const { partition, policies, increment, waiting } = batch
    const failOver = (error: unknown) => {
      markDown(error)
      for (const request of waiting) request.resolve(inMemory(partition, policies, increment))
    }
    let reply: Promise<number[]>
    try {
      const keys = policies.map((policy) => `${namespace}${partition}:${policy.windowMs}`)
      const args = policies.flatMap((policy) => [policy.max, policy.windowMs])
      reply = (redis as ScriptedRedis).slidingWindow(
        keys.length,
        ...keys,
        increment ? 1 : 0,
        SLOTS,
        waiting.length,
        ...args,
      )
    } catch (error) {
      failOver(error)
      return
    }
    withDeadline(
      reply,
      REDIS_DECISION_DEADLINE_MS,
      () => new Error(`no answer within ${REDIS_DECISION_DEADLINE_MS} ms`),
    ).then((answer) => {
      for (const [i, request] of waiting.entries()) request.resolve(redisDecision(answer, policies, increment, i))
    }, failOver)
  }

  function viaRedis(partition: string, policies: readonly RatePolicy[], increment: boolean): Promise<Decision> {
    // A partition never starts with '?': looks and counted requests are batched apart.
    const id = increment ? partition : `?${partition}`
    let batch = batches.get(id)
    if (batch !== undefined && batch.policies !== policies) {
      // The key's policies changed meanwhile: what waits is decided under the old ones first.
      batches.delete(id)
      send(batch)
      batch = undefined
    }
    if (batch === undefined) {
      batch = { partition, policies, increment, waiting: [] }
      batches.set(id, batch)
      if (!flushing) {
        flushing = true
        setImmediate(flush)
      }
    }
    const waiting = batch.waiting
    return new Promise((resolve) => waiting.push({ resolve }))
  }

  return {
    stats,
    /** Whether counters go to Redis: then readiness has a check for it. */
    usesRedis: redis !== undefined,

    /**
     * Decides a request of `partition` (`key:<id>`, `ip:<address>`) under every policy at once
     * (see lib/rate-limit/sliding-window.ts). In memory the decision comes back at once; through
     * Redis, as a promise bounded by REDIS_DECISION_DEADLINE_MS.
     */
    decide(partition: string, policies: readonly RatePolicy[], increment = true): Decision | Promise<Decision> {
      if (!redis) return memory.decide(partition, policies, increment)
      if (stats.redisReachable === false) return inMemory(partition, policies, increment)
      return viaRedis(partition, policies, increment)
    },

    /** Connects to Redis, waiting at most the connect timeout: if it is down, start failed over. */
    async connect() {
      if (!redis) return
      try {
        await withDeadline(
          redis.connect(),
          REDIS_CONNECT_TIMEOUT_MS,
          () => new Error('no connection within the connect timeout'),
        )
        await beat()
      } catch (error) {
        markDown(error)
      }
      heartbeat = setInterval(tick, HEARTBEAT_INTERVAL_MS)
      heartbeat.unref()
    },

    /** The readiness check: rejects while Redis does not answer (limits are then per instance). */
    async check() {
      if (!redis) return
      try {
        await beat()
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
      clearInterval(heartbeat)
      if (!redis) return
      try {
        // Leave at once rather than after INSTANCE_TTL_MS: the others' shares grow sooner.
        if (stats.redisReachable) await redis.zrem(instancesKey, instanceId).catch(() => {})
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
