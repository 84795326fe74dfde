import type { RateLimiter } from '../plugins/rate-limit.js'
import type { Step } from './run-steps.js'

/**
 * Step 4 of the order of checks: the calling key's budget (RATE_LIMIT_MAX per RATE_LIMIT_WINDOW,
 * or the key's own), 429 rate_limited once it is spent. Right after the key: a key over its budget
 * calling a route it has no scope for gets 429, not 403. Every answer from here on shows the budget
 * in its RateLimit-* headers.
 */
export function limitRate(limiter: RateLimiter): Step {
  return function limitRate(request, reply) {
    return limiter.perKey(request, reply)
  }
}
