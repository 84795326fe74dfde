import type { Mode, Scope } from '../lib/api-keys.js'
import type { Session, Stream, Studio } from '../schemas/resources.js'

/**
 * The store interfaces routes and plugins depend on. The SQL store (SQLite or PostgreSQL) and the
 * upstream HTTP service implement them; nothing above this file knows which one runs.
 */

/** A key's own rate-limit policy: at most `max` requests in any `windowMs`. */
export interface KeyRateLimit {
  readonly max: number
  readonly windowMs: number
}

export interface KeyRecord {
  readonly id: string
  /** SHA-256 of the secret, hex. The secret itself is never stored. */
  readonly hash: string
  readonly prefix: string
  readonly accountId: string
  /** A test key (`sk_test_…`) sees only its account's sandbox; a live key only live data. */
  readonly mode: Mode
  readonly scopes: readonly Scope[]
  readonly createdAt: string
  readonly expiresAt: string | null
  readonly revokedAt: string | null
  readonly lastUsedAt: string | null
  /** The key's own rate-limit policies (the strictest decides), replacing the gateway's default; null for the default. */
  readonly rateLimits: readonly KeyRateLimit[] | null
  /** A name for people; null for keys minted before keys had names. */
  readonly name: string | null
  /** The id of the key that minted this one over the API, or `cli` (the command line, the demo seed). */
  readonly createdBy: string
  /** The key that replaced this one when it was rolled; null until then. */
  readonly replacedBy: string | null
}

/** What `keys update` may change of a key; an absent field stays as it is. */
export interface KeyChanges {
  readonly name?: string
  readonly scopes?: readonly Scope[]
  /** null: the gateway's default. */
  readonly rateLimits?: readonly KeyRateLimit[] | null
}

export interface KeyStore {
  findByHash(hash: string): Promise<KeyRecord | undefined>
  /** The key with this id, whatever its account (the command line). */
  get(id: string): Promise<KeyRecord | undefined>
  /** The account's key of this mode with this id; undefined when missing, another account's or the other mode's. */
  find(accountId: string, mode: Mode, id: string): Promise<KeyRecord | undefined>
  insert(key: KeyRecord): Promise<void>
  list(accountId: string): Promise<KeyRecord[]>
  /** A page of the account's keys of one mode, oldest first. */
  listPage(accountId: string, mode: Mode, page: PageRequest): Promise<Page<KeyRecord>>
  /** Marks the key revoked (once; a second call keeps the first time). Undefined when no such key. */
  revoke(id: string, at: string): Promise<KeyRecord | undefined>
  /**
   * In one transaction: stores `successor`, and makes the key `id` name it as its replacement and
   * expire at `expiresAt` (or earlier, if it already expires sooner). Answers the old key as it
   * now is; undefined when no such key, or when it was rolled already (by a concurrent request).
   */
  roll(id: string, successor: KeyRecord, expiresAt: string): Promise<KeyRecord | undefined>
  /** Changes the key's name, scopes or rate-limit policies. Undefined when no such key. */
  update(id: string, changes: KeyChanges): Promise<KeyRecord | undefined>
  /** Records a use of the key. Best effort: callers throttle it and ignore its failures. */
  touch(id: string, at: string): Promise<void>
}

export interface PageRequest {
  readonly limit: number
  /**
   * Where the previous page ended: a position this service issued as `next`, back from a signed
   * cursor. Each implementation defines its own positions (a keyset, an upstream's token).
   */
  readonly after?: string
}

export interface Page<T> {
  readonly items: T[]
  /** The position to continue from; null on the last page. */
  readonly next: string | null
}

export interface StudioRecord extends Studio {
  readonly accountId: string
  readonly mode: Mode
}

/**
 * Who a studio call is made for: the caller's account and mode (its live data or its sandbox),
 * and the request id that the upstream studio service is told so that its logs correlate with
 * ours. Never the key.
 */
export interface CallContext {
  readonly accountId: string
  readonly mode: Mode
  readonly requestId: string
}

/**
 * Studios, their stream and sessions, always seen through one account and one mode: a studio of
 * another account, or of the other mode, is reported exactly as a missing one (undefined). A dependency that cannot answer
 * throws `unavailable` (503), or StoreUnavailable from the SQL store (stores/errors.ts, rendered
 * as the same 503); an upstream that answers nonsense throws `bad_gateway` (502).
 */
export interface StudioService {
  /** May answer at once (a page kept in memory: stores/studio-pages.ts). */
  listStudios(ctx: CallContext, page: PageRequest): Page<Studio> | Promise<Page<Studio>>
  /** May answer at once (a studio found before, kept in memory: stores/studio-cache.ts). */
  getStudio(ctx: CallContext, studioId: string): Studio | undefined | Promise<Studio | undefined>
  getStream(ctx: CallContext, studioId: string): Promise<Stream | undefined>
  /** Ended sessions, newest first. Undefined when the studio is not the account's. */
  listSessions(ctx: CallContext, studioId: string, page: PageRequest): Promise<Page<Session> | undefined>
  /** Idempotent: going live while live returns the unchanged stream. Opens a session. */
  goLive(ctx: CallContext, studioId: string, input: { title: string | null }): Promise<Stream | undefined>
  /** Idempotent: going offline while offline returns the unchanged stream. Ends the session. */
  goOffline(ctx: CallContext, studioId: string): Promise<Stream | undefined>
}

/** Administration that only the command line and the seed use. */
export interface StudioAdmin {
  /** A live studio unless `mode` says `test` (a sandbox studio). */
  createStudio(input: { accountId: string; name: string; id?: string; mode?: Mode }): Promise<StudioRecord>
  /** Both modes' studios, or one mode's. */
  listAccountStudios(accountId: string, mode?: Mode): Promise<StudioRecord[]>
  /** True when the store holds no key and no studio at all. */
  isEmpty(): Promise<boolean>
}

export interface SettingsStore {
  /** The value stored under `name`, creating it with `create()` on first use (race-safe). */
  getOrCreate(name: string, create: () => string): Promise<string>
}

/** What is kept of a write sent with an Idempotency-Key (see lib/idempotency.ts). */
export interface IdempotencyRecord {
  readonly fingerprint: string
  /** Null while the first request with the key still runs (a claim); its answer's status after. */
  readonly statusCode: number | null
  /** The answer's body (JSON text), once stored. */
  readonly body: string | null
  readonly createdAt: string
}

/** Records of writes, by (API key id, Idempotency-Key). */
export interface IdempotencyStore {
  /**
   * Inserts a claim unless a record exists (atomically: of two concurrent claims one wins).
   * Answers `claimed` for the winner, else the record found (undefined if it vanished meanwhile).
   */
  claim(
    keyId: string,
    key: string,
    fingerprint: string,
    at: string,
  ): Promise<{ claimed: true } | { claimed: false; record: IdempotencyRecord | undefined }>
  /** Stores the answer of a claim made at `createdAt`. */
  complete(keyId: string, key: string, createdAt: string, statusCode: number, body: string): Promise<void>
  /** Removes the record if it is still the one made at `createdAt` (a released claim, an expired record). */
  discard(keyId: string, key: string, createdAt: string): Promise<void>
  find(keyId: string, key: string): Promise<IdempotencyRecord | undefined>
  /** Deletes every record made before `before`; answers how many. */
  prune(before: string): Promise<number>
}

export interface SqlStore {
  readonly dialect: 'sqlite' | 'postgres'
  readonly keys: KeyStore
  readonly studios: StudioService & StudioAdmin
  readonly settings: SettingsStore
  readonly idempotency: IdempotencyStore
  /** Resolves when the database answers a trivial query. */
  ping(): Promise<void>
  /**
   * Resolves when the store can serve: it answers, and (SQLite) can write, as a small bounded
   * write shows. Rejects otherwise, with a StoreUnavailable naming the fault (readiness).
   */
  ready(): Promise<void>
  close(): Promise<void>
}
