/**
 * How one instance tells the others that a key changed (revoked, rolled, expired by a roll), so
 * each drops what it cached of it: PostgreSQL LISTEN/NOTIFY, Redis pub/sub, or this process on the
 * embedded store. While a channel is down, messages are lost: each cache then holds a key at most
 * KEY_CACHE_TTL, and when the channel comes back every cache is emptied (`onResync`), since what
 * was missed is unknown.
 */
export interface InvalidationHandlers {
  /** A key changed: forget it. */
  readonly onKey: (keyId: string) => void
  /** The channel is back after an outage (or a reconnection): messages may have been lost. */
  readonly onResync: () => void
  readonly onError: (error: unknown, what: string) => void
}

export interface InvalidationChannel {
  readonly name: 'postgres' | 'redis' | 'process'
  /** Tells every instance (this one included) that the key changed. Rejects when the channel is down. */
  publish(keyId: string): Promise<void>
  close(): Promise<void>
}

/** Key ids are `key_` + base62: anything else on the channel is not ours. */
export const KEY_ID_SHAPE = /^key_[0-9A-Za-z]{1,64}$/
