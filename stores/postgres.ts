import { Kysely, PostgresDialect, type PostgresPool, type PostgresPoolClient, sql } from 'kysely'
import pg from 'pg'
import { StoreUnavailable } from './errors.js'
import { migrateToLatest } from './sql/migrations.js'
import type { Database } from './sql/schema.js'
import { createSqlStore } from './sql/store.js'
import type { SqlStore } from './types.js'

/**
 * Bounds on every call to PostgreSQL, so that an outage answers `503 unavailable` within about a
 * second instead of hanging a request. The server cancels a slow statement first (the connection
 * stays usable); the client gives up on a connection that does not answer at all (a dead network
 * path) a little later. `statement_timeout` and `query_timeout` given as DATABASE_URL parameters
 * override these two. Key verification has its own, shorter bound (lib/key-verifier.ts).
 */
export const POSTGRES_LIMITS = {
  poolSize: 10,
  connectTimeoutMs: 1000,
  statementTimeoutMs: 800,
  queryTimeoutMs: 1000,
  /** A gateway that stalls inside a transaction must not hold row locks for long. */
  idleInTransactionMs: 5000,
  idleConnectionMs: 30_000,
} as const

export interface PostgresStoreOptions {
  /** A pooled connection failed while idle (the database restarted, the network cut): reported, never thrown. */
  readonly onConnectionError?: (error: Error) => void
}

/** Opens the PostgreSQL store of `url`, after applying pending migrations to it. */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<SqlStore> {
  await migrate(url)
  const pool = new pg.Pool({
    connectionString: url,
    max: POSTGRES_LIMITS.poolSize,
    connectionTimeoutMillis: POSTGRES_LIMITS.connectTimeoutMs,
    idleTimeoutMillis: POSTGRES_LIMITS.idleConnectionMs,
    statement_timeout: POSTGRES_LIMITS.statementTimeoutMs,
    query_timeout: POSTGRES_LIMITS.queryTimeoutMs,
    idle_in_transaction_session_timeout: POSTGRES_LIMITS.idleInTransactionMs,
    keepAlive: true,
    application_name: 'studio-gateway',
  })
  // Without these listeners, a connection that fails (idle in the pool, or checked out between
  // two queries) emits an unhandled 'error' and takes the process down.
  pool.on('error', (error) => options.onConnectionError?.(loggable(error)))
  pool.on('connect', (client) => client.on('error', () => {}))
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: faultAwarePool(pool) }) })
  return createSqlStore(db, 'postgres')
}

/**
 * Migrations run on their own connection, without the serving timeouts: another instance may be
 * holding the migration lock while it migrates, and the wait is legitimate.
 */
async function migrate(url: string): Promise<void> {
  const pool = new pg.Pool({
    connectionString: url,
    max: 1,
    connectionTimeoutMillis: 10_000,
    application_name: 'studio-gateway migrate',
  })
  pool.on('error', () => {})
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) })
  try {
    const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(db)
    const schema = rows[0]?.schema
    if (!schema) throw new Error('DATABASE_URL: no schema of its search_path exists; create it first')
    await migrateToLatest(db, schema)
  } finally {
    await db.destroy()
  }
}

/**
 * The pg pool as Kysely sees it, with three repairs:
 *   - a connection that failed (reset, timed out) is destroyed on release instead of going back to
 *     the pool, where it would fail the next query too;
 *   - a pooled connection that died unnoticed (the database restarted, a network path was cut and
 *     healed) fails the first query of a checkout at once: that query moves to a new connection,
 *     once, so the first requests after an outage are served rather than answered 503. Not after
 *     a timeout: that would double the wait.
 *   - a failure that means "the database cannot answer now" becomes `StoreUnavailable` (503
 *     unavailable) rather than an unexpected error (500).
 */
function faultAwarePool(pool: pg.Pool): PostgresPool {
  const acquire = async () => {
    try {
      return await pool.connect()
    } catch (error) {
      throw toStoreError(error)
    }
  }
  return {
    async connect() {
      // Undefined once released early: a stale connection whose replacement could not be had.
      let client: pg.PoolClient | undefined = await acquire()
      let fault: Error | undefined
      let used = false
      const run = async (connection: pg.PoolClient, text: string, parameters: readonly unknown[]) => {
        try {
          return await connection.query(text, parameters as unknown[])
        } catch (error) {
          if (isConnectionFault(error)) fault = error as Error
          throw error
        }
      }
      const adapter = {
        async query(text: string, parameters: readonly unknown[]) {
          // After a connection fault the rest of a transaction (its rollback) fails at once
          // instead of waiting out another timeout.
          if (fault !== undefined || client === undefined) {
            throw toStoreError(fault ?? new Error('Client was closed and is not queryable'))
          }
          const first = !used
          used = true
          try {
            return await run(client, text, parameters)
          } catch (error) {
            if (!first || fault === undefined || isTimeout(fault)) throw toStoreError(error)
            client.release(fault)
            client = undefined
            const replacement = await acquire()
            client = replacement
            fault = undefined
            try {
              return await run(replacement, text, parameters)
            } catch (retryError) {
              throw toStoreError(retryError)
            }
          }
        },
        release(destroy?: boolean) {
          client?.release(fault ?? destroy === true)
          client = undefined
        },
      }
      return adapter as unknown as PostgresPoolClient
    },
    end: () => pool.end(),
  }
}

const isTimeout = (error: Error) => /timeout/i.test(error.message)

const NETWORK_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
])

// pg reports these without a code.
const CONNECTION_FAILURES =
  /^(Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|Client was closed)/

/** The connection itself failed: it must not serve another query. */
export function isConnectionFault(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown }
  if (typeof code === 'string' && NETWORK_ERRORS.has(code)) return true
  return typeof message === 'string' && CONNECTION_FAILURES.test(message)
}

/**
 * SQLSTATEs that mean "the database cannot serve right now", not "this query is wrong":
 * connection exceptions (08), shutdown or starting up (57P01–57P03), a statement cancelled by
 * statement_timeout (57014), insufficient resources such as too many connections (53), and
 * serialization failures or deadlocks (40001, 40P01).
 */
function isTransientSqlState(code: string): boolean {
  return /^(08|53)/.test(code) || /^57P0[1-3]$/.test(code) || ['57014', '40001', '40P01'].includes(code)
}

function toStoreError(error: unknown): unknown {
  const { code } = (error ?? {}) as { code?: unknown }
  const transient = isConnectionFault(error) || (typeof code === 'string' && isTransientSqlState(code))
  return transient ? new StoreUnavailable('the database cannot answer now', loggable(error)) : error
}

/**
 * What can be logged of a driver error: its message and code. pg-pool attaches the client to
 * some errors, and the client holds the connection parameters, password included.
 */
function loggable(error: unknown): Error {
  const { message, code, stack } = (error ?? {}) as { message?: unknown; code?: unknown; stack?: unknown }
  const safe = new Error(typeof message === 'string' ? message : String(error))
  if (typeof code === 'string') Object.assign(safe, { code })
  if (typeof stack === 'string') safe.stack = stack
  return safe
}
