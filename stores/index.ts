import type { Config } from '../config.js'
import { openSqliteStore } from './sqlite.js'
import type { SqlStore } from './types.js'

/** The key and studio store the configuration names: PostgreSQL when DATABASE_URL is set, else SQLite. */
export async function openStore(config: Config): Promise<SqlStore> {
  if (config.databaseUrl !== undefined) {
    throw new Error('DATABASE_URL (PostgreSQL) is not supported by this build yet')
  }
  return openSqliteStore(config.dataDir)
}
