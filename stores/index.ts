import { randomBytes } from 'node:crypto'
import type { Config } from '../config.js'
import { serveSandboxFromStore } from './sandbox-routing.js'
import { openSqliteStore } from './sqlite.js'
import { cacheFoundStudios } from './studio-cache.js'
import type { SqlStore, StudioService } from './types.js'

export interface StoreOptions {
  /** A pooled database connection failed while idle: reported here, never thrown. */
  readonly onConnectionError?: (error: Error) => void
  /** The migrations opening the store applied, oldest first (none when it was at the latest). */
  readonly onMigrated?: (applied: readonly string[]) => void
}

/**
 * The key and studio store the configuration names: PostgreSQL when DATABASE_URL is set, else SQLite.
 * The PostgreSQL driver and the upstream's HTTP client are loaded only when configured: each
 * costs megabytes of memory for the life of the process.
 */
export async function openStore(config: Config, options: StoreOptions = {}): Promise<SqlStore> {
  if (config.databaseUrl !== undefined) {
    const { openPostgresStore } = await import('./postgres.js')
    return openPostgresStore(config.databaseUrl, { ...options, timeoutMs: config.storeTimeoutMs })
  }
  return openSqliteStore(config.dataDir, { timeoutMs: config.storeTimeoutMs, onMigrated: options.onMigrated })
}

/** What a running gateway serves from: the store, and where studios come from. */
export interface Backends {
  /** Keys, the cursor secret, and (without an upstream) studios. */
  readonly store: SqlStore
  /**
   * The store's studios, or the upstream studio service when UPSTREAM_URL is set (then the
   * sandbox of test keys is still the store's: stores/sandbox-routing.ts).
   */
  readonly studios: StudioService
  /** The secret that signs pagination cursors: kept in the store, so every instance on it agrees. */
  readonly cursorSecret: Buffer
  /** The secret that hashes Idempotency-Keys and salts their sealed answers (lib/sealed-answers.ts). */
  readonly idempotencySecret: Buffer
  /** Readiness checks by dependency name: `sqlite` or `postgres`, and `upstream`. */
  readonly checks: Record<string, () => Promise<void>>
  close(): Promise<void>
}

export async function openBackends(config: Config, options: StoreOptions = {}): Promise<Backends> {
  const store = await openStore(config, options)
  const upstream =
    config.upstreamUrl === undefined
      ? undefined
      : (await import('./upstream-studio-service.js')).createUpstreamStudioService({
          url: config.upstreamUrl,
          timeoutMs: config.upstreamTimeoutMs,
        })
  const stored = cacheFoundStudios(store.studios)
  return {
    store,
    studios: upstream === undefined ? stored : serveSandboxFromStore(upstream, stored),
    cursorSecret: await secretOf(store, 'cursor_secret'),
    idempotencySecret: await secretOf(store, 'idempotency_secret'),
    checks: {
      [store.dialect]: () => store.ready(),
      ...(upstream === undefined ? {} : { upstream: () => upstream.ping() }),
    },
    async close() {
      await upstream?.close()
      await store.close()
    },
  }
}

/** A random server secret kept in the store under `name`, the same for every instance on it. */
async function secretOf(store: SqlStore, name: string): Promise<Buffer> {
  const encoded = await store.settings.getOrCreate(name, () => randomBytes(32).toString('base64url'))
  return Buffer.from(encoded, 'base64url')
}
