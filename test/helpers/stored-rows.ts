import { join } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely'
import pg from 'pg'
import { SQLITE_FILE } from '../../stores/sqlite.js'

/** A connection of the test's own to a gateway's store (`storeEnv`): SQLite file or PostgreSQL schema. */
export async function rawDatabase(storeEnv: Record<string, string>): Promise<Kysely<unknown>> {
  if (storeEnv.DATABASE_URL !== undefined) {
    return new Kysely({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: storeEnv.DATABASE_URL }) }),
    })
  }
  const file = new BetterSqlite3(join(storeEnv.DATA_DIR as string, SQLITE_FILE))
  return new Kysely({ dialect: new SqliteDialect({ database: file }) })
}

export async function currentSchema(db: Kysely<unknown>): Promise<string> {
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db)
  return (rows[0] as { schema: string }).schema
}

/** Every row of every table of the store, as JSON text: what a backup or a read of the database holds. */
export async function storedText(storeEnv: Record<string, string>): Promise<string> {
  const db = await rawDatabase(storeEnv)
  try {
    // On PostgreSQL the introspection lists every schema's tables: only this store's are read.
    const schema = storeEnv.DATABASE_URL === undefined ? undefined : await currentSchema(db)
    const tables = (await db.introspection.getTables()).filter(
      (table) => schema === undefined || table.schema === schema,
    )
    const dumps: unknown[] = []
    for (const table of tables) {
      const { rows } = await sql.raw(`select * from "${table.name}"`).execute(db)
      dumps.push({ table: table.name, rows })
    }
    return JSON.stringify(dumps)
  } finally {
    await db.destroy()
  }
}
