import rateLimit, { normalizeIP } from '@fastify/rate-limit'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { ApiError, rateLimited } from '../lib/errors.js'
import { createRateLimitCounters, type RateLimitStats } from '../lib/rate-limit-counters.js'
import { callerOf } from '../pipeline/authentication.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The hooks that enforce the budgets; app.ts places each where the order of checks wants it. */
    readonly rateLimiter: RateLimiter
    /** Rejections and Redis fail-open events since start, for metrics (see lib/rate-limit-counters.ts). */
    readonly rateLimitStats: RateLimitStats
  }
}

export interface RateLimiter {
  /** onRequest, after auth: the calling key's budget (RATE_LIMIT_MAX, or the key's own). */
  perKey(request: FastifyRequest, reply: FastifyReply): Promise<void>
  /** Before the 404 handler answers: an unknown route spends the client IP's failure budget. */
  unknownRoute(request: FastifyRequest, reply: FastifyReply): Promise<void>
  /**
   * A request refused before it had a key (by auth, or before routing): a failed authentication
   * (401) spends the client IP's failure budget, and 429s once it is spent; any other refusal
   * shows that budget without spending it.
   */
  refused(request: FastifyRequest, reply: FastifyReply, error: unknown): Promise<void>
}

type Budget = keyof RateLimitStats['rejected']

/**
 * The client IP a failure budget is kept for: IPv6 addresses by their /64 (normalizeIP, as the
 * plugin does), IPv4 as is. An IPv4 address is already in normal form; telling it apart by its
 * lack of a colon skips normalizeIP's IPv6 regular expression on every refused request.
 */
const clientAddress = (ip: string) => (ip.includes(':') ? normalizeIP(ip) : ip)
type Check = ReturnType<FastifyRequest['server']['createRateLimit']>
type Decision = Awaited<ReturnType<Check>>

/**
 * Rate limits with @fastify/rate-limit, its counters in memory or in Redis (REDIS_URL). Two budgets:
 * per key (every request that authenticated), and per client IP for failures that have no key to
 * charge (failed authentication, unknown routes), so key and URL guessing are limited too. The
 * plugin's own route hooks would run after every app-level onRequest hook (after the scope check);
 * its `createRateLimit` checks are placed explicitly instead (see app.ts).
 */
export default fp<{ config: Config }>(
  async function rateLimits(app, { config }) {
    const counters = await createRateLimitCounters({
      redisUrl: config.redisUrl,
      keyPrefix: config.redisKeyPrefix,
      log: app.log,
    })
    app.addHook('onClose', () => counters.close())
    await counters.connect()
    if (counters.usesRedis) app.dependencies.register('redis', () => counters.check())

    await app.register(rateLimit, {
      global: false,
      store: counters.Store,
      // The store fails over to memory by itself; should it still throw, let the request through
      // rather than answer 500 because of the limiter.
      skipOnError: true,
    })

    const { windowMs } = config.rateLimit
    const keyBudget = app.createRateLimit({
      keyGenerator: (request) => `key:${callerOf(request).id}`,
      max: (request) => callerOf(request).rateLimit?.max ?? config.rateLimit.max,
      timeWindow: (request) => callerOf(request).rateLimit?.windowMs ?? windowMs,
    })
    const ipBudget = app.createRateLimit({
      keyGenerator: (request) => `ip:${clientAddress(request.ip)}`,
      max: config.rateLimit.unauthMax,
      timeWindow: windowMs,
    })

    /** Sets the RateLimit-* headers of the budget that applied; a 429 once it is spent. */
    function enforce(decision: Decision, reply: FastifyReply, budget: Budget, { spent = true } = {}) {
      if (decision.isAllowed) return
      // Whole seconds, at least 1: a client that waits this long finds a fresh window. No window
      // open yet (a peek at an unused budget): a full one.
      const resetSeconds = Math.max(1, decision.ttl > 0 ? decision.ttlInSeconds : Math.ceil(decision.timeWindow / 1000))
      reply.header('ratelimit-limit', decision.max)
      reply.header('ratelimit-remaining', decision.remaining)
      reply.header('ratelimit-reset', resetSeconds)
      if (spent && decision.isExceeded) {
        counters.stats.rejected[budget]++
        throw rateLimited(resetSeconds)
      }
    }

    const limiter: RateLimiter = {
      async perKey(request, reply) {
        enforce(await keyBudget(request), reply, 'key')
      },
      async unknownRoute(request, reply) {
        enforce(await ipBudget(request), reply, 'ip')
      },
      async refused(request, reply, error) {
        // Only failed authentication counts: a malformed request (400: two different keys, a bad
        // URL) guesses nothing, and a 503 (verification down) is not the client's doing.
        const failedAuth = error instanceof ApiError && error.code === 'invalid_key'
        enforce(await ipBudget(request, { increment: failedAuth }), reply, 'ip', { spent: failedAuth })
      },
    }
    app.decorate('rateLimiter', limiter)
    app.decorate('rateLimitStats', counters.stats)
  },
  { name: 'rate-limit' },
)
