import type { Kysely } from 'kysely'
import type { SettingsStore } from '../types.js'
import type { Database } from './schema.js'

/** Named values the instances on one store share (the cursor signing secret). */
export function createSettingsRepository(db: Kysely<Database>): SettingsStore {
  return {
    async getOrCreate(name, create) {
      await db
        .insertInto('settings')
        .values({ name, value: create() })
        .onConflict((oc) => oc.column('name').doNothing())
        .execute()
      const row = await db.selectFrom('settings').select('value').where('name', '=', name).executeTakeFirstOrThrow()
      return row.value
    },
  }
}
