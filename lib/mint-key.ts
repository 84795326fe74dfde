import type { KeyRateLimit, KeyRecord } from '../stores/types.js'
import { displayPrefix, generateKeySecret, hashKey, type Mode, type Scope } from './api-keys.js'
import { newKeyId } from './ids.js'

export interface MintKeyInput {
  readonly accountId: string
  /** `live` when omitted; a `test` key (`sk_test_…`) sees only the account's sandbox. */
  readonly mode?: Mode
  readonly scopes: readonly Scope[]
  readonly expiresAt?: string | null
  readonly rateLimits?: readonly KeyRateLimit[] | null
  readonly name?: string | null
  /** The key that mints it over the API; `cli` by default (the command line, the demo seed). */
  readonly createdBy?: string
}

/** A new key: the record to store (its hash, never the secret) and the secret to show once. */
export function mintKey(input: MintKeyInput, now = new Date()): { record: KeyRecord; secret: string } {
  const mode = input.mode ?? 'live'
  const secret = generateKeySecret(mode)
  const record: KeyRecord = {
    id: newKeyId(),
    hash: hashKey(secret),
    prefix: displayPrefix(secret),
    accountId: input.accountId,
    mode,
    scopes: [...new Set(input.scopes)],
    createdAt: now.toISOString(),
    expiresAt: input.expiresAt ?? null,
    revokedAt: null,
    lastUsedAt: null,
    rateLimits: input.rateLimits ?? null,
    name: input.name ?? null,
    createdBy: input.createdBy ?? 'cli',
    replacedBy: null,
  }
  return { record, secret }
}
