import {
  type DatabaseIntrospector,
  DEFAULT_MIGRATION_LOCK_TABLE,
  DEFAULT_MIGRATION_TABLE,
  Kysely,
  PostgresDialect,
  sql,
  type TableMetadata,
} from 'kysely'
import pg from 'pg'
import { faultAwarePool, loggable } from './postgres-faults.js'
import { migrateToLatest } from './sql/migrations.js'
import type { Database } from './sql/schema.js'
import { createSqlStore } from './sql/store.js'
import type { SqlStore } from './types.js'

/**
 * Bounds on every call to PostgreSQL, so that an outage answers `503 unavailable` within about a
 * second instead of hanging a request. One deadline, STORE_TIMEOUT (`timeoutMs`, 1 s by default),
 * covers each checkout: waiting for a pooled connection or making one, and every statement run on
 * it (stores/postgres-faults.ts). The server cancels a slow statement a little earlier (the
 * connection stays usable); the client gives up at the deadline (a dead network path). A
 * `statement_timeout` given as a DATABASE_URL parameter overrides the server's. Key verification
 * has its own, shorter bound (lib/key-verifier.ts).
 */
export const POSTGRES_LIMITS = {
  poolSize: 10,
  timeoutMs: 1000,
  /** The server-side statement_timeout, as a share of the deadline. */
  statementTimeoutShare: 0.8,
  /** A gateway that stalls inside a transaction must not hold row locks for long. */
  idleInTransactionMs: 5000,
  idleConnectionMs: 30_000,
} as const

export interface PostgresStoreOptions {
  /** A pooled connection failed while idle (the database restarted, the network cut): reported, never thrown. */
  readonly onConnectionError?: (error: Error) => void
  /** The deadline of one store operation (STORE_TIMEOUT). */
  readonly timeoutMs?: number
  /** The migrations opening the store applied, oldest first. */
  readonly onMigrated?: (applied: readonly string[]) => void
}

/** Opens the PostgreSQL store of `url`, after applying pending migrations to it. */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<SqlStore> {
  const applied = await migrate(url)
  options.onMigrated?.(applied)
  const timeoutMs = options.timeoutMs ?? POSTGRES_LIMITS.timeoutMs
  const pool = new pg.Pool({
    connectionString: url,
    max: POSTGRES_LIMITS.poolSize,
    connectionTimeoutMillis: timeoutMs,
    idleTimeoutMillis: POSTGRES_LIMITS.idleConnectionMs,
    statement_timeout: Math.round(timeoutMs * POSTGRES_LIMITS.statementTimeoutShare),
    query_timeout: timeoutMs,
    idle_in_transaction_session_timeout: POSTGRES_LIMITS.idleInTransactionMs,
    keepAlive: true,
    application_name: 'studio-gateway',
  })
  // Without these listeners, a connection that fails (idle in the pool, or checked out between
  // two queries) emits an unhandled 'error' and takes the process down.
  pool.on('error', (error) => options.onConnectionError?.(loggable(error)))
  pool.on('connect', (client) => client.on('error', () => {}))
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: faultAwarePool(pool, { timeoutMs }) }) })
  return createSqlStore(db, 'postgres')
}

/**
 * What Kysely's Migrator asks of the database (does our schema exist, which tables it holds),
 * answered for our schema alone. Kysely's own PostgreSQL introspector reads every schema of the
 * database and looks each one up again by name, so it fails ("schema … does not exist") whenever
 * another deployment, or a test, drops a schema of the same database meanwhile. Tables are listed
 * without their columns, which the Migrator does not read.
 */
function schemaIntrospector(db: Kysely<unknown>, schema: string): DatabaseIntrospector {
  const internal = new Set([DEFAULT_MIGRATION_TABLE, DEFAULT_MIGRATION_LOCK_TABLE])
  const getTables: DatabaseIntrospector['getTables'] = async (options) => {
    const { rows } = await sql<{ name: string; isView: boolean }>`
      select c.relname as "name", c.relkind = 'v' as "isView"
      from pg_catalog.pg_class c join pg_catalog.pg_namespace ns on ns.oid = c.relnamespace
      where ns.nspname = ${schema} and c.relkind in ('r', 'p', 'v')`.execute(db)
    return rows
      .filter((row) => options?.withInternalKyselyTables === true || !internal.has(row.name))
      .map((row): TableMetadata => ({ ...row, schema, columns: [] }))
  }
  return {
    async getSchemas() {
      const { rows } = await sql<{ name: string }>`
        select nspname as "name" from pg_catalog.pg_namespace where nspname = ${schema}`.execute(db)
      return rows
    },
    getTables,
    async getMetadata(options) {
      return { tables: await getTables(options) }
    },
  }
}

/**
 * Migrations run on their own connection, without the serving timeouts: another instance may be
 * holding the migration lock while it migrates, and the wait is legitimate.
 */
async function migrate(url: string): Promise<string[]> {
  const pool = new pg.Pool({
    connectionString: url,
    max: 1,
    connectionTimeoutMillis: 10_000,
    application_name: 'studio-gateway migrate',
  })
  pool.on('error', () => {})
  try {
    const { rows } = await pool.query<{ schema: string | null }>('select current_schema() as schema')
    const schema = rows[0]?.schema
    if (!schema) throw new Error('DATABASE_URL: no schema of its search_path exists; create it first')
    class MigrationDialect extends PostgresDialect {
      override createIntrospector(db: Kysely<unknown>) {
        return schemaIntrospector(db, schema as string)
      }
    }
    const db = new Kysely<unknown>({ dialect: new MigrationDialect({ pool }) })
    try {
      return await migrateToLatest(db, schema)
    } finally {
      await db.destroy()
    }
  } finally {
    // Already ended by db.destroy() when the migration ran: only the first end counts.
    await pool.end().catch(() => {})
  }
}
