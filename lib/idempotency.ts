import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { IdempotencyStore } from '../stores/types.js'
import { invalidRequest, unavailable } from './errors.js'
import type { AnswerSealer } from './sealed-answers.js'

/**
 * Safe retries of writes (go-live, go-offline, creating and rolling keys) sent with an
 * `Idempotency-Key`. The first request with a key claims a record (atomically: the store's primary
 * key on (API key id, Idempotency-Key) lets one insert win), runs, and stores its answer; a retry
 * with the same key and the same request gets that answer back instead of running again. The
 * record is stored under a hash of the Idempotency-Key and its answer sealed with a key derived
 * from it (lib/sealed-answers.ts): a new key's secret is never stored in clear. See README, "Safe retries".
 */

/** 1–255 visible ASCII characters (no space, no control character). */
export const IDEMPOTENCY_KEY_PATTERN = '^[!-~]{1,255}$'

/** Set on a replayed answer. */
export const REPLAYED_HEADER = 'idempotent-replayed'

const RECORD_TTL_MS = 24 * 60 * 60 * 1000

/** How often, at most, one instance deletes expired records. */
const PRUNE_INTERVAL_MS = 60_000

export interface IdempotencyOptions {
  readonly store: IdempotencyStore
  readonly sealer: AnswerSealer
  /** How long a stored answer is replayed (24 h). */
  readonly ttlMs?: number
  /**
   * A claim without an answer after this long belongs to a request that will never finish (its
   * process died): another request may take it over. Longer than any write can run.
   */
  readonly leaseMs: number
  /** How long a retry waits for a concurrent first request to finish before `503 unavailable`. */
  readonly waitMs: number
  readonly pollMs?: number
  readonly onPruneError?: (error: unknown) => void
}

/** A claim this request holds: it runs, then `finish` stores (or releases) it. */
export interface Claim {
  readonly keyId: string
  /** The record's key in the store (a hash of the Idempotency-Key). */
  readonly key: string
  readonly createdAt: string
  /** Seals the answer; in this process's memory only. */
  readonly sealingKey: Buffer
}

export type Outcome =
  | { readonly kind: 'execute'; readonly claim: Claim }
  | { readonly kind: 'replay'; readonly statusCode: number; readonly body: string }

/** What identifies a request: a different one under the same key is refused. */
export function fingerprintOf(method: string, route: string, params: unknown, body: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify([method, route, params ?? {}, body ?? {}]))
    .digest('hex')
}

export function createIdempotency(options: IdempotencyOptions) {
  const { store, sealer, leaseMs, waitMs } = options
  const ttlMs = options.ttlMs ?? RECORD_TTL_MS
  const pollMs = options.pollMs ?? 20
  let lastPrune = 0

  function pruneNow(now: number) {
    if (now - lastPrune < PRUNE_INTERVAL_MS) return
    lastPrune = now
    store.prune(new Date(now - ttlMs).toISOString()).catch((error: unknown) => options.onPruneError?.(error))
  }

  /**
   * Claims the key for this request (`execute`), or answers the stored answer (`replay`). Throws
   * `400 invalid_request` when the key was used for another request, `503 unavailable` when a
   * concurrent request with the key is still running after `waitMs`.
   */
  async function begin(keyId: string, idempotencyKey: string, fingerprint: string): Promise<Outcome> {
    const key = sealer.lookupKeyOf(idempotencyKey)
    const sealingKey = sealer.sealingKeyOf(idempotencyKey)
    const deadline = Date.now() + waitMs
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0 && Date.now() >= deadline) {
        throw unavailable('a request with this Idempotency-Key is still in progress; retry shortly')
      }
      const now = Date.now()
      pruneNow(now)
      const at = new Date(now).toISOString()
      const result = await store.claim(keyId, key, fingerprint, at)
      if (result.claimed) return { kind: 'execute', claim: { keyId, key, createdAt: at, sealingKey } }
      const { record } = result
      if (record !== undefined) {
        const age = now - Date.parse(record.createdAt)
        const answer = record.body === null ? null : sealer.open(sealingKey, keyId, record.body)
        // An answer this Idempotency-Key cannot open was not sealed with it: as if absent.
        if (age >= ttlMs || (record.statusCode === null && age >= leaseMs) || answer === undefined) {
          // Expired, or abandoned: as if absent. Removed only if still that record, so of two
          // requests doing this at once, one claims next and the other finds its claim.
          await store.discard(keyId, key, record.createdAt)
          continue
        }
        if (record.fingerprint !== fingerprint) {
          throw invalidRequest(
            'the Idempotency-Key header was already used for a different request (another route, studio or body); send a new key',
          )
        }
        if (record.statusCode !== null && answer !== null) {
          return { kind: 'replay', statusCode: record.statusCode, body: answer }
        }
      }
      await sleep(pollMs)
    }
  }

  /**
   * Stores the answer of an executed request for replay. A 5xx is not stored: the request may not
   * have run (a dependency was down), so the claim is released and a retry runs it again.
   */
  async function finish(claim: Claim, statusCode: number, body: string): Promise<void> {
    if (statusCode >= 500) await store.discard(claim.keyId, claim.key, claim.createdAt)
    else {
      const sealed = sealer.seal(claim.sealingKey, claim.keyId, body)
      await store.complete(claim.keyId, claim.key, claim.createdAt, statusCode, sealed)
    }
  }

  /** Gives the claim up without an answer (the request failed before answering). */
  async function release(claim: Claim): Promise<void> {
    await store.discard(claim.keyId, claim.key, claim.createdAt)
  }

  return { begin, finish, release }
}

export type Idempotency = ReturnType<typeof createIdempotency>
