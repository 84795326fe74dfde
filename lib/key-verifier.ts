import { LRUCache } from 'lru-cache'
import type { KeyRecord, KeyStore } from '../stores/types.js'
import { hashKey, isWellFormedKey, type Mode, type Scope } from './api-keys.js'
import { withDeadline } from './deadline.js'
import { formatDuration } from './duration.js'
import { type ApiError, keyRefusals as refusals, unavailable } from './errors.js'
import type { RatePolicy } from './rate-limit/sliding-window.js'

/** What a request knows of the key that authenticated it. Never the secret. */
export interface VerifiedKey {
  readonly id: string
  readonly prefix: string
  readonly accountId: string
  /** `test`: the key sees only its account's sandbox, and may simulate errors. */
  readonly mode: Mode
  readonly scopes: readonly Scope[]
  readonly expiresAt: string | null
  /** The key's own rate-limit policies, named for the RateLimit fields; null for the gateway's default. */
  readonly ratePolicies: readonly RatePolicy[] | null
  /** The X-Key-Scopes header value, built once per cache entry. */
  readonly scopesHeader: string
  /**
   * The key's rate-limit counters' name, built once per cache entry; a test key's are apart from
   * live ones by name too (docs/test-mode.md).
   */
  readonly rateLimitPartition: string
}

interface CacheEntry {
  readonly key: VerifiedKey | null
  readonly revoked: boolean
  readonly expiresAtMs: number
  lastTouchMs: number
}

export interface KeyVerifierOptions {
  readonly keys: KeyStore
  /** How long a verification is reused; 0 turns caching off. */
  readonly ttlMs: number
  /** A lookup that takes longer is answered `503 unavailable` (500 ms: the answer stays well within 1 s). */
  readonly lookupTimeoutMs?: number
  /** How often a key's lastUsedAt is written at most. */
  readonly touchIntervalMs?: number
  readonly onTouchError?: (error: unknown) => void
}

/** Unknown keys are remembered for at most this long, so a key minted a moment ago works soon. */
const NEGATIVE_TTL_MS = 5000
const MAX_CACHED_KEYS = 10_000

export function createKeyVerifier(options: KeyVerifierOptions) {
  const { keys, ttlMs, lookupTimeoutMs = 500, touchIntervalMs = 60_000 } = options
  // Keyed by the secret as presented (see verify).
  const cache =
    ttlMs > 0 ? new LRUCache<string, CacheEntry>({ max: MAX_CACHED_KEYS, ttl: ttlMs, ttlAutopurge: false }) : undefined
  const stats = { hits: 0, misses: 0 }

  async function lookup(hash: string): Promise<KeyRecord | undefined> {
    try {
      return await withDeadline(
        keys.findByHash(hash),
        lookupTimeoutMs,
        () => new Error(`key lookup exceeded ${lookupTimeoutMs} ms`),
      )
    } catch (error) {
      throw unavailable('API key verification is temporarily unavailable; retry shortly', 1, error)
    }
  }

  function entryFor(record: KeyRecord | undefined): CacheEntry {
    if (!record) return { key: null, revoked: false, expiresAtMs: Number.POSITIVE_INFINITY, lastTouchMs: 0 }
    return {
      key: {
        id: record.id,
        prefix: record.prefix,
        accountId: record.accountId,
        mode: record.mode,
        scopes: record.scopes,
        expiresAt: record.expiresAt,
        ratePolicies: record.rateLimits?.map(keyPolicy) ?? null,
        scopesHeader: record.scopes.join(', '),
        rateLimitPartition: record.mode === 'test' ? `test-key:${record.id}` : `key:${record.id}`,
      },
      revoked: record.revokedAt !== null,
      expiresAtMs: record.expiresAt === null ? Number.POSITIVE_INFINITY : Date.parse(record.expiresAt),
      lastTouchMs: record.lastUsedAt === null ? 0 : Date.parse(record.lastUsedAt),
    }
  }

  /** The key of a cache entry, or why it is refused (unknown, revoked, expired); records the use now and then. */
  function accept(entry: CacheEntry): VerifiedKey | ApiError {
    const key = entry.key
    if (!key) return refusals.unknown
    if (entry.revoked) return refusals.revoked
    const now = Date.now()
    if (now >= entry.expiresAtMs) return refusals.expired
    if (now - entry.lastTouchMs >= touchIntervalMs) {
      entry.lastTouchMs = now
      keys.touch(key.id, new Date(now).toISOString()).catch((error) => options.onTouchError?.(error))
    }
    return key
  }

  return {
    stats,

    /**
     * Drops what the cache knows of the key `id` (revoked, rolled, changed): its next request is
     * verified against the store. Rare, so a scan of the cache is fine.
     */
    forget(id: string): void {
      if (!cache) return
      const stale: string[] = []
      for (const [secret, entry] of cache.entries()) if (entry.key?.id === id) stale.push(secret)
      for (const secret of stale) cache.delete(secret)
    },

    /** Drops every cached verification (invalidations may have been missed while their channel was down). */
    forgetAll(): void {
      cache?.clear()
    },

    /**
     * The key a secret stands for: at once when the cache knows the secret, else a promise of it
     * once the store has answered. A refusal the cache or the key's shape decides is returned at
     * once (`invalid_key`, 401), so rejecting a known-bad key costs neither a promise nor a throw;
     * the promise rejects with `invalid_key` or `unavailable` (503).
     */
    verify(secret: string | undefined): VerifiedKey | ApiError | Promise<VerifiedKey> {
      if (secret === undefined) return refusals.missing
      // The hot path is one lookup by the presented secret: its checksum and SHA-256 are computed
      // only on a miss. Only well-formed secrets are kept, each for at most the TTL, in this
      // process's memory only (never logged, never in a message).
      const cached = cache?.get(secret)
      if (cached) {
        stats.hits++
        return accept(cached)
      }
      if (!isWellFormedKey(secret)) return refusals.malformed
      stats.misses++
      return lookup(hashKey(secret)).then((record) => {
        const entry = entryFor(record)
        cache?.set(secret, entry, entry.key ? undefined : { ttl: Math.min(ttlMs, NEGATIVE_TTL_MS) })
        const accepted = accept(entry)
        if (accepted instanceof Error) throw accepted
        return accepted
      })
    },
  }
}

export type KeyVerifier = ReturnType<typeof createKeyVerifier>

/** A key's policy, named by its window (`"1s"`, `"1m"`) in the RateLimit fields. */
const keyPolicy = ({ max, windowMs }: { max: number; windowMs: number }): RatePolicy => ({
  name: formatDuration(windowMs),
  max,
  windowMs,
})
