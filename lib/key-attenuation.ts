import type { KeyRateLimit } from '../stores/types.js'
import type { Scope } from './api-keys.js'
import { insufficientScope, invalidRequest } from './errors.js'

/**
 * A key can only hand out less than it holds: the scopes of a key it mints (or rolls, or
 * revokes) must be among its own, its rate limits no looser than its own, and it cannot outlive it.
 */

/** 403 insufficient_scope naming the first of `wanted` the caller does not hold. */
export function requireHeldScopes(held: readonly Scope[], wanted: readonly Scope[]): void {
  const missing = wanted.find((scope) => !held.includes(scope))
  if (missing !== undefined) throw insufficientScope(missing)
}

/**
 * The most requests `policies` allow in an interval of `windowMs`: each policy allows its `max`
 * in each of its windows the interval touches; the strictest decides.
 */
const mostIn = (windowMs: number, policies: readonly KeyRateLimit[]) =>
  Math.min(...policies.map((p) => Math.ceil(windowMs / p.windowMs) * p.max))

/** 400 when `wanted` would let a key send more, over any of the caller's windows, than the caller may. */
export function requireRateLimitsWithin(held: readonly KeyRateLimit[], wanted: readonly KeyRateLimit[]): void {
  for (const policy of held) {
    const most = mostIn(policy.windowMs, wanted)
    if (most > policy.max) {
      throw invalidRequest(
        `body field "rateLimits" allows up to ${most} requests in ${policy.windowMs / 1000} s, more than the calling key's own limit of ${policy.max}`,
      )
    }
  }
}

/**
 * The expiry of a key the caller mints: the one asked for (in the future, and not after the
 * caller's own), or the caller's when none is asked for.
 */
export function expiryWithin(held: string | null, wanted: string | null | undefined, now: number): string | null {
  if (wanted === undefined || wanted === null) return held
  const at = Date.parse(wanted)
  if (at <= now) throw invalidRequest('body field "expiresAt" must be in the future')
  if (held !== null && at > Date.parse(held)) {
    throw invalidRequest(`body field "expiresAt" must not be later than the calling key's own expiry (${held})`)
  }
  return new Date(at).toISOString()
}

/** 400 when two policies share a window (the stricter would make the other useless). */
export function requireDistinctWindows(policies: readonly KeyRateLimit[]): void {
  if (new Set(policies.map((p) => p.windowMs)).size !== policies.length) {
    throw invalidRequest('body field "rateLimits" must give each window once')
  }
}
