import { type Kysely, sql } from 'kysely'
import type { SqlStore } from '../types.js'
import { createIdempotencyRepository } from './idempotency.js'
import { createKeyRepository } from './keys.js'
import type { Database } from './schema.js'
import { createSettingsRepository } from './settings.js'
import { createStudioRepository } from './studios.js'

/**
 * The store over SQL: one repository per table group, the same queries for SQLite and PostgreSQL
 * (Kysely compiles each dialect).
 */
export function createSqlStore(db: Kysely<Database>, dialect: SqlStore['dialect']): SqlStore {
  const ping = async () => {
    await sql`select 1`.execute(db)
  }
  return {
    dialect,
    keys: createKeyRepository(db),
    studios: createStudioRepository(db, dialect),
    idempotency: createIdempotencyRepository(db),
    settings: createSettingsRepository(db),
    ping,
    // Answering is ready enough here; the SQLite store adds a write probe (stores/sqlite-guard.ts).
    ready: ping,
    async close() {
      await db.destroy()
    },
  }
}
