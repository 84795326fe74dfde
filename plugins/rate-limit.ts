import rateLimit from '@fastify/rate-limit'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { ApiError, rateLimited } from '../lib/errors.js'
import { createRateLimitCounters, type RateLimitStats } from '../lib/rate-limit/counters.js'
import type { PolicyState, RatePolicy } from '../lib/rate-limit/sliding-window.js'
import { callerOf } from '../pipeline/authentication.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The budgets; the /v1 pipeline places each where the order of checks wants it. */
    readonly rateLimiter: RateLimiter
    /** Rejections, Redis fail-overs and instances, for metrics (see lib/rate-limit/counters.ts). */
    readonly rateLimitStats: RateLimitStats
  }
}

export interface RateLimiter {
  /** After the key: the calling key's budget (its own policies, or RATE_LIMIT_MAX per RATE_LIMIT_WINDOW). */
  perKey(request: FastifyRequest, reply: FastifyReply): void | ApiError | Promise<void>
  /** Before the 404 handler answers: an unknown route spends the client IP's failure budget. */
  unknownRoute(request: FastifyRequest, reply: FastifyReply): Promise<void>
  /**
   * A request refused before it had a key (by auth, or before routing): a failed authentication
   * (401) spends the client IP's failure budget, and 429s once it is spent; any other refusal
   * shows that budget without spending it.
   */
  refused(request: FastifyRequest, reply: FastifyReply, error: unknown): Promise<void>
  /**
   * Simulated answers of a test key (Simulate-Error), shaped as the real ones and counting
   * nothing: the key's budget shown spent for `seconds`, with the 429 to answer...
   */
  simulatedRefusal(request: FastifyRequest, reply: FastifyReply, seconds: number): ApiError
  /** ...and the client IP's failure budget shown (as on a real 401), without spending it. */
  showFailureBudget(request: FastifyRequest, reply: FastifyReply): Promise<void>
}

type Budget = keyof RateLimitStats['rejected']

/** A policy list as the RateLimit-Policy field (RFC 9651 list of strings with parameters). */
const policyField = (policies: readonly RatePolicy[]) =>
  policies.map((p) => `"${p.name}";q=${p.max};w=${Math.max(1, Math.ceil(p.windowMs / 1000))}`).join(', ')

/**
 * The rate limits: the sliding-window algorithm of lib/rate-limit/ (no burst at a window boundary),
 * its counters in memory or in Redis (REDIS_URL). Two budgets: per key, and per client IP for
 * failures that have no key to charge (failed authentication, unknown routes), so guessing keys and
 * URLs is limited too.
 *
 * The client-IP budget goes through @fastify/rate-limit (`createRateLimit`, with the algorithm as
 * its `store`): one policy per check fits that contract. The key budget calls the algorithm
 * directly: a key may carry several policies decided at once (one Redis script call), the answer
 * names the policy that applied with its exact wait, and in memory the decision needs no promise
 * at all — none of which the plugin's store contract (one counter and one TTL per call) can carry.
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

    const { windowMs } = config.rateLimit
    const defaultPolicies: readonly RatePolicy[] = [{ name: 'default', max: config.rateLimit.max, windowMs }]
    const failures: RatePolicy = { name: 'failures', max: config.rateLimit.unauthMax, windowMs }
    const failuresField = policyField([failures])
    const policyFields = new WeakMap<readonly RatePolicy[], string>()
    const policyFieldOf = (policies: readonly RatePolicy[]) => {
      let field = policyFields.get(policies)
      if (field === undefined) {
        field = policyField(policies)
        policyFields.set(policies, field)
      }
      return field
    }

    /** Shows the state that applied in the answer's headers; returns the 429 when the request was refused. */
    function enforce(
      state: PolicyState,
      allowed: boolean,
      field: string,
      reply: FastifyReply,
      budget?: Budget,
    ): ApiError | undefined {
      // Whole seconds, rounded up: a client that waits this long finds room. When refused, the
      // exact wait (at least 1), which Retry-After repeats; else until more quota is available.
      const seconds = allowed ? Math.ceil(state.resetMs / 1000) : Math.max(1, Math.ceil(state.waitMs / 1000))
      reply.header('ratelimit-limit', state.policy.max)
      reply.header('ratelimit-remaining', state.remaining)
      reply.header('ratelimit-reset', seconds)
      reply.header('ratelimit-policy', field)
      reply.header(
        'ratelimit',
        seconds > 0
          ? `"${state.policy.name}";r=${state.remaining};t=${seconds}`
          : `"${state.policy.name}";r=${state.remaining}`,
      )
      if (!allowed && budget !== undefined) {
        counters.stats.rejected[budget]++
        return rateLimited(seconds)
      }
      return undefined
    }

    // The client-IP failure budget, through @fastify/rate-limit with the algorithm as its store.
    class FailureStore {
      incr(key: string, callback: StoreCallback, timeWindow: number, max: number) {
        decideForPlugin(key, timeWindow, max, true, callback)
      }
      read(key: string, callback: StoreCallback, timeWindow: number, max: number) {
        decideForPlugin(key, timeWindow, max, false, callback)
      }
      child() {
        return new FailureStore()
      }
    }
    // What the plugin reads of a decision: the count (over max when refused) and the time to wait.
    const pluginResult = (state: PolicyState, allowed: boolean) => ({
      current: allowed ? state.policy.max - state.remaining : state.policy.max + 1,
      ttl: allowed ? state.resetMs : state.waitMs,
    })
    // The plugin passes the budget's max and window on every call: one policy list is kept for them.
    let pluginPolicies: readonly RatePolicy[] = [failures]
    function decideForPlugin(key: string, windowMs: number, max: number, increment: boolean, callback: StoreCallback) {
      const known = pluginPolicies[0] as RatePolicy
      if (known.max !== max || known.windowMs !== windowMs) pluginPolicies = [{ name: failures.name, max, windowMs }]
      const policies = pluginPolicies
      // The key is the client address as the plugin normalized it. With TRUST_PROXY=true it is
      // the first X-Forwarded-For entry, whatever a client wrote there: text that is no address
      // shares one budget, so junk neither grows the counters by its length nor buys a fresh budget.
      const partition = ADDRESS_TEXT.test(key) ? `ip:${key}` : NOT_AN_ADDRESS
      const decision = counters.decide(partition, policies, increment)
      if (decision instanceof Promise) {
        decision.then((d) => callback(null, pluginResult(d.applied, d.allowed)), callback)
      } else {
        callback(null, pluginResult(decision.applied, decision.allowed))
      }
    }
    await app.register(rateLimit, { global: false, store: FailureStore, skipOnError: true })
    // The plugin's own key generator: the client IP, IPv6 addresses by their /64 (IPv4-mapped ones
    // as IPv4). Being the plugin's, it is called directly; a keyGenerator of ours would be awaited,
    // a promise more on every refused request.
    const ipBudget = app.createRateLimit({ ipv6Subnet: 64, max: failures.max, timeWindow: failures.windowMs })

    // The plugin's check takes its options per call: two fixed ones, none built per request.
    const spendOne = { increment: true }
    const onlyLook = { increment: false }
    function failureBudget(request: FastifyRequest, reply: FastifyReply, spend: boolean): Promise<void> {
      return ipBudget(request, spend ? spendOne : onlyLook).then((result) => {
        if (result.isAllowed) return
        const refused = spend && result.isExceeded
        const state: PolicyState = {
          policy: failures,
          remaining: result.remaining,
          resetMs: refused ? 0 : result.ttl,
          waitMs: refused ? result.ttl : 0,
        }
        const refusal = enforce(state, !refused, failuresField, reply, 'ip')
        if (refusal) throw refusal
      })
    }

    const limiter: RateLimiter = {
      perKey(request, reply) {
        const key = callerOf(request)
        const policies = key.ratePolicies ?? defaultPolicies
        const decision = counters.decide(key.rateLimitPartition, policies)
        if (decision instanceof Promise) {
          return decision.then((d) => {
            const refusal = enforce(d.applied, d.allowed, policyFieldOf(policies), reply, 'key')
            if (refusal) throw refusal
          })
        }
        return enforce(decision.applied, decision.allowed, policyFieldOf(policies), reply, 'key')
      },
      simulatedRefusal(request, reply, seconds) {
        const policies = callerOf(request).ratePolicies ?? defaultPolicies
        const state: PolicyState = {
          policy: policies[0] as RatePolicy,
          remaining: 0,
          resetMs: 0,
          waitMs: seconds * 1000,
        }
        enforce(state, false, policyFieldOf(policies), reply)
        return rateLimited(seconds)
      },
      showFailureBudget: (request, reply) => failureBudget(request, reply, false),
      unknownRoute: (request, reply) => failureBudget(request, reply, true),
      // Only failed authentication counts: a malformed request (400: two different keys, a bad
      // URL) guesses nothing, and a 503 (verification down) is not the client's doing.
      refused: (request, reply, error) =>
        failureBudget(request, reply, error instanceof ApiError && error.code === 'invalid_key'),
    }
    app.decorate('rateLimiter', limiter)
    app.decorate('rateLimitStats', counters.stats)
  },
  { name: 'rate-limit' },
)

type StoreCallback = (error: Error | null, result?: { current: number; ttl: number }) => void

/** An address as `@fastify/rate-limit` normalizes it: IPv4, or IPv6 lowercased (its /64, without a zone). */
const ADDRESS_TEXT = /^[0-9a-f.:]{2,39}$/
/** The one failure budget of every client whose address is not one (see decideForPlugin). */
const NOT_AN_ADDRESS = 'ip:not-an-address'
