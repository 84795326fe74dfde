import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { Kysely, type SqliteDatabase, SqliteDialect, type SqliteStatement } from 'kysely'
import { migrateToLatest } from './sql/migrations.js'
import type { Database } from './sql/schema.js'
import { createSqlStore } from './sql/store.js'
import { guardSqliteStore, SQLITE_LIMITS } from './sqlite-guard.js'
import { cacheStudioPages } from './studio-pages.js'
import type { SqlStore } from './types.js'

export const SQLITE_FILE = 'studio-gateway.sqlite'

/**
 * better-sqlite3 behind Kysely's SQLite dialect, with its prepared statements kept: Kysely asks
 * for `prepare(sql)` on every query, and preparing is most of the cost of a small read.
 */
function withStatementCache(db: BetterSqlite3.Database): SqliteDatabase {
  const statements = new Map<string, SqliteStatement>()
  return {
    close: () => db.close(),
    prepare(sql) {
      // SQLite rolls a transaction back by itself on some errors (SQLITE_FULL, an I/O error): the
      // ROLLBACK Kysely then sends would fail and hide the error that matters.
      if (sql === 'rollback' && !db.inTransaction) return NOTHING_TO_ROLL_BACK
      let statement = statements.get(sql)
      if (!statement) {
        statement = db.prepare(sql) as unknown as SqliteStatement
        // Our queries are a fixed set; the bound only guards against a caller building SQL dynamically.
        if (statements.size >= 1000) statements.clear()
        statements.set(sql, statement)
      }
      return statement
    },
  }
}

const NOTHING_TO_ROLL_BACK: SqliteStatement = {
  reader: false,
  all: () => [],
  run: () => ({ changes: 0, lastInsertRowid: 0 }),
  iterate: () => [][Symbol.iterator](),
}

export interface SqliteStoreOptions {
  /** The deadline of one store operation, waiting for a lock included (STORE_TIMEOUT). */
  readonly timeoutMs?: number
  /** The migrations opening the store applied, oldest first. */
  readonly onMigrated?: (applied: readonly string[]) => void
}

/** Opens (creating on first use) the embedded store under `dataDir` and migrates it. */
export async function openSqliteStore(dataDir: string, options: SqliteStoreOptions = {}): Promise<SqlStore> {
  const dir = resolve(dataDir)
  mkdirSync(dir, { recursive: true })
  const sqlite = new BetterSqlite3(join(dir, SQLITE_FILE))
  // WAL lets the command line write while a server reads. While migrating (before serving),
  // writers wait for each other in SQLite's busy handler; once serving, they never do: the wait
  // would block the event loop (stores/sqlite-guard.ts retries asynchronously instead).
  sqlite.pragma('journal_mode = WAL')
  sqlite.pragma('synchronous = NORMAL')
  sqlite.pragma('foreign_keys = ON')
  sqlite.pragma('busy_timeout = 5000')
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) })
  try {
    const applied = await migrateToLatest(db as Kysely<unknown>)
    options.onMigrated?.(applied)
  } catch (error) {
    await db.destroy()
    throw error
  }
  sqlite.pragma(`busy_timeout = ${SQLITE_LIMITS.busyTimeoutMs}`)
  const store = guardSqliteStore(createSqlStore(db, 'sqlite'), db, options.timeoutMs ?? SQLITE_LIMITS.timeoutMs)
  const dataVersion = sqlite.prepare('PRAGMA data_version').pluck()
  return { ...store, studios: cacheStudioPages(store.studios, () => dataVersion.get() as number) }
}
