import { retryPolicyOf, type StudioGatewayError } from './errors.js'

export interface RetryOptions {
  /** Attempts per call, the first one included: 1 turns retries off. Default 3. */
  maxAttempts?: number
  /** The backoff before the first retry is drawn from [0, baseDelayMs]; it doubles after. Default 250. */
  baseDelayMs?: number
  /** The cap of the doubling: no backoff is drawn from a range wider than this. Default 8000. */
  maxDelayMs?: number
  /**
   * The longest `Retry-After` the client waits for. An answer asking for longer is thrown at once
   * (with `retryAfter` set) instead of blocking the call. Default 60 000: one window of the
   * gateway's default rate limit.
   */
  maxRetryAfterMs?: number
}

export const defaultRetryOptions: Required<RetryOptions> = {
  maxAttempts: 3,
  baseDelayMs: 250,
  maxDelayMs: 8_000,
  maxRetryAfterMs: 60_000,
}

/** Time, as the client sees it. Injectable so that tests (and simulations) do not sleep for real. */
export interface Clock {
  /** Milliseconds since the epoch (also used to read a Retry-After given as an HTTP date). */
  now(): number
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
}

/** Why a call stopped retrying and threw. */
export type GiveUpReason =
  /** The code is not transient (every 4xx, `write_disabled`, an answer that is not the envelope). */
  | 'not_retryable'
  /** A write sent without an Idempotency-Key: repeating it could act twice. */
  | 'write_without_idempotency_key'
  /** `maxAttempts` attempts were made. */
  | 'attempts_exhausted'
  /** The answer's Retry-After is longer than `maxRetryAfterMs`. */
  | 'retry_after_too_long'
  /** The call's `timeoutMs` has passed, or would pass before the next attempt. */
  | 'deadline'
  /** The caller's AbortSignal fired. */
  | 'aborted'

export type RetryDecision = { retry: true; delayMs: number } | { retry: false; reason: GiveUpReason }

export interface RetryContext {
  /** The attempt that just failed, from 1. */
  attempt: number
  /** False for a write sent without an Idempotency-Key. */
  repeatable: boolean
  /** When the call must be over (clock time), if it has a timeout. */
  deadline: number | undefined
  now: number
  options: Required<RetryOptions>
  /** A number in [0, 1): Math.random unless injected. */
  random: () => number
}

/**
 * The spec's advice, done: retry only the transient codes, each `backoff` code after a capped
 * exponential backoff with full jitter (at least as long as a Retry-After the answer carries),
 * `rate_limited` after its Retry-After; never anything else.
 */
export function decideRetry(error: StudioGatewayError, context: RetryContext): RetryDecision {
  if (!error.transient) return { retry: false, reason: 'not_retryable' }
  if (context.deadline !== undefined && context.now >= context.deadline) return { retry: false, reason: 'deadline' }
  if (!context.repeatable) return { retry: false, reason: 'write_without_idempotency_key' }
  if (context.attempt >= context.options.maxAttempts) return { retry: false, reason: 'attempts_exhausted' }
  const serverFloorMs = error.retryAfter === undefined ? 0 : error.retryAfter * 1000
  if (serverFloorMs > context.options.maxRetryAfterMs) return { retry: false, reason: 'retry_after_too_long' }
  // A 429 names the moment its window reopens: waiting exactly that long is the whole policy.
  const rateLimitedWithRetryAfter =
    (retryPolicyOf as Record<string, string | undefined>)[error.code] === 'retry-after' &&
    error.retryAfter !== undefined
  const backoffMs = rateLimitedWithRetryAfter ? 0 : fullJitterBackoff(context.attempt, context.options, context.random)
  const delayMs = Math.max(backoffMs, serverFloorMs)
  if (context.deadline !== undefined && context.now + delayMs >= context.deadline) {
    return { retry: false, reason: 'deadline' }
  }
  return { retry: true, delayMs }
}

/**
 * "Full jitter" (AWS Architecture Blog, "Exponential Backoff and Jitter"): a uniform draw from
 * [0, min(maxDelayMs, baseDelayMs × 2^(retry − 1))], so that clients failing together do not
 * retry together. `retry` counts from 1 (the wait before the second attempt).
 */
export function fullJitterBackoff(retry: number, options: Required<RetryOptions>, random: () => number): number {
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (retry - 1))
  return Math.floor(random() * ceiling)
}

/**
 * `Retry-After` in seconds: delta-seconds (what the gateway sends) or an HTTP date (RFC 9110
 * §10.2.3, which a proxy may send); undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text)
  const date = Date.parse(text)
  if (Number.isNaN(date)) return undefined
  return Math.max(0, Math.ceil((date - now) / 1000))
}

/** Checks the numbers a caller configures, once, so a typo fails at construction and not mid-call. */
export function checkRetryOptions(options: Required<RetryOptions>): void {
  if (!Number.isInteger(options.maxAttempts) || options.maxAttempts < 1) {
    throw new RangeError('retry.maxAttempts must be an integer of at least 1')
  }
  for (const name of ['baseDelayMs', 'maxDelayMs', 'maxRetryAfterMs'] as const) {
    if (!Number.isFinite(options[name]) || options[name] < 0) {
      throw new RangeError(`retry.${name} must be a finite number of milliseconds, 0 or more`)
    }
  }
}
