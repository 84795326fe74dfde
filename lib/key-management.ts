import type { FastifyBaseLogger } from 'fastify'
import type { ApiKeyDetails, CreateKeyBody } from '../schemas/keys.js'
import type { KeyRateLimit, KeyRecord, KeyStore, Page, PageRequest } from '../stores/types.js'
import { invalidRequest, keyNotFound } from './errors.js'
import { expiryWithin, requireDistinctWindows, requireHeldScopes, requireRateLimitsWithin } from './key-attenuation.js'
import type { VerifiedKey } from './key-verifier.js'
import { mintKey } from './mint-key.js'

/**
 * Self-serve key management (POST/GET /v1/keys…): what a calling key may do to the keys of its
 * account. Every change is announced (`onChanged`) so that every instance forgets what it cached
 * of the key, and logged at info with ids, never a secret.
 */
export interface KeyManagementOptions {
  readonly keys: KeyStore
  /** The gateway's default policies, which a key without its own is held to. */
  readonly defaultRateLimits: readonly KeyRateLimit[]
  readonly onChanged: (keyId: string) => void
  /** A test key was minted for the account: its sandbox gets its starting studios (lib/sandbox.ts). */
  readonly onTestKeyMinted: (accountId: string) => Promise<unknown>
  readonly log: FastifyBaseLogger
}

/** A test key's credential reaches the sandbox only: it never mints a key of live data. */
const liveFromTest = invalidRequest(
  'body "mode": a test key mints test keys only; mint a live key with a live key or the command line',
)

/** A key as the API shows it. */
export function keyDetails(key: KeyRecord, now = Date.now()): ApiKeyDetails {
  return {
    id: key.id,
    mode: key.mode,
    name: key.name,
    prefix: key.prefix,
    scopes: [...key.scopes],
    status: statusOf(key, now),
    createdAt: key.createdAt,
    expiresAt: key.expiresAt,
    revokedAt: key.revokedAt,
    lastUsedAt: key.lastUsedAt,
    rateLimits: key.rateLimits?.map(({ max, windowMs }) => ({ max, windowSeconds: windowMs / 1000 })) ?? null,
    createdBy: key.createdBy,
    replacedBy: key.replacedBy,
  }
}

export function statusOf(key: KeyRecord, now = Date.now()): ApiKeyDetails['status'] {
  if (key.revokedAt !== null) return 'revoked'
  if (key.expiresAt !== null && Date.parse(key.expiresAt) <= now) return 'expired'
  return 'active'
}

const fromBody = (limits: NonNullable<CreateKeyBody['rateLimits']>): KeyRateLimit[] =>
  limits
    .map(({ max, windowSeconds }) => ({ max, windowMs: windowSeconds * 1000 }))
    .sort((a, b) => a.windowMs - b.windowMs)

const alreadyRolled = (key: KeyRecord) =>
  invalidRequest(
    `the key ${key.id} was rolled already${key.replacedBy === null ? '' : ` (its successor is ${key.replacedBy})`}: roll its successor instead`,
  )

/** 400 unless the key is active and was not rolled already. */
export function requireRollable(key: KeyRecord, now: number): void {
  const status = statusOf(key, now)
  if (status !== 'active') throw invalidRequest(`the key ${key.id} is ${status}: only an active key can be rolled`)
  if (key.replacedBy !== null) throw alreadyRolled(key)
}

export interface RollOptions {
  /** Who rolls it: a key id, or `cli`. */
  readonly createdBy: string
  /** The successor's expiry. */
  readonly expiresAt: string | null
  /** How long the old secret keeps working. */
  readonly graceMs: number
  readonly now: number
}

/**
 * Mints the successor of a rollable key (same account, mode, name, scopes and rate limits) and
 * stores the roll: the old key expires `graceMs` from `now`. 400 when a concurrent roll won.
 */
export async function rollKeyRecord(keys: KeyStore, key: KeyRecord, options: RollOptions) {
  const { record, secret } = mintKey(
    {
      accountId: key.accountId,
      mode: key.mode,
      scopes: key.scopes,
      name: key.name,
      expiresAt: options.expiresAt,
      rateLimits: key.rateLimits,
      createdBy: options.createdBy,
    },
    new Date(options.now),
  )
  const old = await keys.roll(key.id, record, new Date(options.now + options.graceMs).toISOString())
  if (!old) throw alreadyRolled(key)
  return { old, record, secret }
}

export function createKeyManagement(options: KeyManagementOptions) {
  const { keys, defaultRateLimits, onChanged, onTestKeyMinted, log } = options
  // Ends of grace periods this instance started, to log the old key's expiry when it happens.
  const graceTimers = new Set<NodeJS.Timeout>()

  const heldRateLimits = (caller: VerifiedKey): readonly KeyRateLimit[] => caller.ratePolicies ?? defaultRateLimits

  async function owned(caller: VerifiedKey, keyId: string): Promise<KeyRecord> {
    const key = await keys.find(caller.accountId, caller.mode, keyId)
    if (!key) throw keyNotFound()
    return key
  }

  function expiredByRoll(key: KeyRecord, successorId: string, graceMs: number) {
    const logExpiry = () =>
      log.info(
        { event: 'key.expired_by_roll', keyId: key.id, accountId: key.accountId, successorId },
        'API key expired by roll',
      )
    if (graceMs === 0) return logExpiry()
    const timer = setTimeout(() => {
      graceTimers.delete(timer)
      logExpiry()
      onChanged(key.id)
    }, graceMs)
    timer.unref()
    graceTimers.add(timer)
  }

  return {
    async create(caller: VerifiedKey, body: CreateKeyBody) {
      const mode = body.mode ?? caller.mode
      if (caller.mode === 'test' && mode === 'live') throw liveFromTest
      requireHeldScopes(caller.scopes, body.scopes)
      let rateLimits: KeyRateLimit[] | null =
        caller.ratePolicies?.map(({ max, windowMs }) => ({ max, windowMs })) ?? null
      if (body.rateLimits !== undefined && body.rateLimits !== null) {
        rateLimits = fromBody(body.rateLimits)
        requireDistinctWindows(rateLimits)
        requireRateLimitsWithin(heldRateLimits(caller), rateLimits)
      }
      const expiresAt = expiryWithin(caller.expiresAt, body.expiresAt, Date.now())
      const { record, secret } = mintKey({
        accountId: caller.accountId,
        // A key mints keys of its own mode unless a live key asks for a test one.
        mode,
        scopes: body.scopes,
        name: body.name,
        expiresAt,
        rateLimits,
        createdBy: caller.id,
      })
      if (mode === 'test') await onTestKeyMinted(caller.accountId)
      await keys.insert(record)
      log.info(
        { event: 'key.created', keyId: record.id, accountId: record.accountId, mode, by: caller.id },
        'API key created',
      )
      return { ...keyDetails(record), secret }
    },

    async list(caller: VerifiedKey, page: PageRequest): Promise<Page<ApiKeyDetails>> {
      const found = await keys.listPage(caller.accountId, caller.mode, page)
      const now = Date.now()
      return { items: found.items.map((key) => keyDetails(key, now)), next: found.next }
    },

    async get(caller: VerifiedKey, keyId: string): Promise<ApiKeyDetails> {
      return keyDetails(await owned(caller, keyId))
    },

    /** A new key with the same name, scopes and policies; the old one expires when the grace period ends. */
    async roll(caller: VerifiedKey, keyId: string, graceSeconds: number) {
      const key = await owned(caller, keyId)
      requireHeldScopes(caller.scopes, key.scopes)
      const now = Date.now()
      requireRollable(key, now)
      requireRateLimitsWithin(heldRateLimits(caller), key.rateLimits ?? defaultRateLimits)
      const expiresAt = expiryWithin(caller.expiresAt, key.expiresAt, now)
      const graceMs = graceSeconds * 1000
      const { old, record, secret } = await rollKeyRecord(keys, key, { createdBy: caller.id, expiresAt, graceMs, now })
      onChanged(key.id)
      log.info(
        {
          event: 'key.rolled',
          keyId: key.id,
          successorId: record.id,
          accountId: key.accountId,
          by: caller.id,
          oldExpiresAt: old.expiresAt,
        },
        'API key rolled',
      )
      expiredByRoll(old, record.id, old.expiresAt === null ? graceMs : Math.max(0, Date.parse(old.expiresAt) - now))
      return { ...keyDetails(record), secret }
    },

    /** Refused from this moment on every instance (within a second while the invalidation channel is up). */
    async revoke(caller: VerifiedKey, keyId: string): Promise<ApiKeyDetails> {
      const key = await owned(caller, keyId)
      requireHeldScopes(caller.scopes, key.scopes)
      const revoked = await keys.revoke(key.id, new Date().toISOString())
      if (!revoked) throw keyNotFound()
      onChanged(key.id)
      if (key.revokedAt === null) {
        log.info({ event: 'key.revoked', keyId: key.id, accountId: key.accountId, by: caller.id }, 'API key revoked')
      }
      return keyDetails(revoked)
    },

    /** Stops the timers of grace periods (the app closes). */
    close() {
      for (const timer of graceTimers) clearTimeout(timer)
      graceTimers.clear()
    },
  }
}

export type KeyManagement = ReturnType<typeof createKeyManagement>
