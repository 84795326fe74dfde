import { type Kysely, type Migration, type MigrationProvider, Migrator, sql } from 'kysely'

/**
 * Versioned schema migrations, in code so that the compiled build and the TypeScript tests run the
 * same list. Names sort in the order they apply; a migration, once released, never changes: add a
 * new one instead. The same builder calls produce the SQLite and the PostgreSQL schema.
 */
const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('api_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('hash', 'text', (c) => c.notNull().unique())
        .addColumn('prefix', 'text', (c) => c.notNull())
        .addColumn('account_id', 'text', (c) => c.notNull())
        .addColumn('scopes', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text')
        .addColumn('revoked_at', 'text')
        .addColumn('last_used_at', 'text')
        .addColumn('rate_limit_max', 'integer')
        .addColumn('rate_limit_window_ms', 'bigint')
        .execute()
      await db.schema.createIndex('api_keys_account').on('api_keys').columns(['account_id', 'created_at']).execute()

      await db.schema
        .createTable('studios')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('account_id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute()
      await db.schema
        .createIndex('studios_account_created')
        .on('studios')
        .columns(['account_id', 'created_at', 'id'])
        .execute()

      await db.schema
        .createTable('streams')
        .addColumn('studio_id', 'text', (c) => c.primaryKey().references('studios.id').onDelete('cascade'))
        .addColumn('status', 'text', (c) => c.notNull().check(sqlStatusCheck()))
        .addColumn('title', 'text')
        .addColumn('started_at', 'text')
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute()

      await db.schema
        .createTable('sessions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('studio_id', 'text', (c) => c.notNull().references('studios.id').onDelete('cascade'))
        .addColumn('title', 'text')
        .addColumn('started_at', 'text', (c) => c.notNull())
        .addColumn('ended_at', 'text')
        .execute()
      await db.schema
        .createIndex('sessions_studio_started')
        .on('sessions')
        .columns(['studio_id', 'started_at', 'id'])
        .execute()

      await db.schema
        .createTable('settings')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute()
    },
  },
  '0002_idempotency': {
    async up(db: Kysely<unknown>) {
      // One row per (key, Idempotency-Key): claimed (status_code null) before the write runs,
      // completed with the answer after. The primary key is what makes a claim atomic.
      await db.schema
        .createTable('idempotency_records')
        .addColumn('key_id', 'text', (c) => c.notNull())
        .addColumn('idempotency_key', 'text', (c) => c.notNull())
        .addColumn('fingerprint', 'text', (c) => c.notNull())
        .addColumn('status_code', 'integer')
        .addColumn('body', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('idempotency_records_pk', ['key_id', 'idempotency_key'])
        .execute()
      await db.schema
        .createIndex('idempotency_records_created')
        .on('idempotency_records')
        .column('created_at')
        .execute()
    },
  },
  '0003_key_rate_limit_policies': {
    async up(db: Kysely<unknown>) {
      // A key may carry several policies (20 a second and 600 a minute): one JSON column replaces
      // the pair that held one. Existing per-key limits are carried over.
      await db.schema.alterTable('api_keys').addColumn('rate_limits', 'text').execute()
      const keys = db as unknown as Kysely<{
        api_keys: {
          id: string
          rate_limit_max: number | null
          rate_limit_window_ms: number | null
          rate_limits: string | null
        }
      }>
      const limited = await keys
        .selectFrom('api_keys')
        .select(['id', 'rate_limit_max', 'rate_limit_window_ms'])
        .where('rate_limit_max', 'is not', null)
        .execute()
      for (const key of limited) {
        const policies = [{ max: Number(key.rate_limit_max), windowMs: Number(key.rate_limit_window_ms) }]
        await keys
          .updateTable('api_keys')
          .set({ rate_limits: JSON.stringify(policies) })
          .where('id', '=', key.id)
          .execute()
      }
      await db.schema.alterTable('api_keys').dropColumn('rate_limit_max').execute()
      await db.schema.alterTable('api_keys').dropColumn('rate_limit_window_ms').execute()
    },
  },
  '0004_key_management': {
    async up(db: Kysely<unknown>) {
      // Keys get a name and the one who minted them; every key so far came from the command line
      // or the demo seed.
      await db.schema.alterTable('api_keys').addColumn('name', 'text').execute()
      await db.schema
        .alterTable('api_keys')
        .addColumn('created_by', 'text', (c) => c.notNull().defaultTo('cli'))
        .execute()
      // A rolled key names its successor (and cannot be rolled again: its expiry is its grace's end).
      await db.schema.alterTable('api_keys').addColumn('replaced_by', 'text').execute()
      // Idempotency records are now kept by a hash of the Idempotency-Key with a sealed answer
      // (lib/sealed-answers.ts): the ones stored in clear before cannot be read that way, and are
      // dropped (a retry of such a write runs again; go-live and go-offline are idempotent anyway).
      await db.deleteFrom('idempotency_records' as never).execute()
    },
  },
  '0005_test_mode': {
    async up(db: Kysely<unknown>) {
      // Test keys (sk_test_) and the sandbox studios they see. Every existing row is live data.
      await db.schema
        .alterTable('api_keys')
        .addColumn('mode', 'text', (c) => c.notNull().defaultTo('live').check(sqlModeCheck()))
        .execute()
      await db.schema
        .alterTable('studios')
        .addColumn('mode', 'text', (c) => c.notNull().defaultTo('live').check(sqlModeCheck()))
        .execute()
      // The list of an account's studios is now the list of one mode's.
      await db.schema.dropIndex('studios_account_created').execute()
      await db.schema
        .createIndex('studios_account_mode_created')
        .on('studios')
        .columns(['account_id', 'mode', 'created_at', 'id'])
        .execute()
    },
  },
}

function sqlModeCheck() {
  return sql`mode in ('live', 'test')`
}

function sqlStatusCheck() {
  return sql`status in ('offline', 'live')`
}

const provider: MigrationProvider = { getMigrations: async () => migrations }

/**
 * Applies every pending migration; throws with the failing migration's name and cause. On
 * PostgreSQL, `schema` is the schema the tables live in (the first of search_path): Kysely looks
 * for its bookkeeping tables in every schema of the database unless told which one is ours.
 */
export async function migrateToLatest(db: Kysely<unknown>, schema?: string, upTo?: string): Promise<string[]> {
  const migrator = new Migrator({ db, provider, ...(schema === undefined ? {} : { migrationTableSchema: schema }) })
  // `upTo` stops at an earlier migration: what a database of an older release holds (tests).
  const { error, results } = upTo === undefined ? await migrator.migrateToLatest() : await migrator.migrateTo(upTo)
  const failed = results?.find((r) => r.status === 'Error')
  if (error) {
    throw new Error(`database migration ${failed?.migrationName ?? ''} failed: ${String(error)}`, { cause: error })
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
}
