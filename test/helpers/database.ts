import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import type { Test } from 'tap'

/**
 * The PostgreSQL the suite runs against: set DATABASE_URL for the test process and every gateway
 * the helpers build uses it, each on its own fresh schema, dropped at teardown, so parallel test
 * files (and other people's runs on the same server) never see each other's rows. Unset, the
 * gateways use SQLite and the PostgreSQL-only suites skip.
 */
export const testDatabaseUrl: string | undefined = process.env.DATABASE_URL?.trim() || undefined

/** The engine the suite runs on, as the store names itself (and its readiness check). */
export const testEngine: 'sqlite' | 'postgres' = testDatabaseUrl === undefined ? 'sqlite' : 'postgres'

export const POSTGRES_SKIP_REASON = 'PostgreSQL suite skipped: DATABASE_URL is not set'

/** `url` with its search_path set to `schema` (a libpq `options` parameter, which pg honours). */
export function withSchema(url: string, schema: string): string {
  const parsed = new URL(url)
  parsed.searchParams.set('options', `-c search_path=${schema}`)
  return parsed.toString()
}

async function onDatabase(url: string, statement: string) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 })
  client.on('error', () => {})
  await client.connect()
  try {
    await client.query(statement)
  } finally {
    await client.end()
  }
}

/**
 * A new, empty schema on the test database, dropped at the end of `t`; returns the URL that
 * selects it. Fails (never skips) when the server does not answer.
 */
export async function freshSchema(t: Test, url = testDatabaseUrl): Promise<string> {
  if (url === undefined) throw new Error('freshSchema needs DATABASE_URL')
  const schema = `sg_test_${process.pid}_${randomBytes(6).toString('hex')}`
  await onDatabase(url, `create schema "${schema}"`)
  t.teardown(() => onDatabase(url, `drop schema if exists "${schema}" cascade`))
  return withSchema(url, schema)
}

/**
 * The environment that gives a gateway or the command line a fresh store of the engine under
 * test: DATABASE_URL on its own schema when the suite runs on PostgreSQL, else DATA_DIR in a new
 * temporary directory. Both are removed at the end of `t`.
 */
export async function freshStoreEnv(t: Test): Promise<Record<string, string>> {
  if (testDatabaseUrl !== undefined) return { DATABASE_URL: await freshSchema(t) }
  const dataDir = await mkdtemp(join(tmpdir(), 'studio-gateway-test-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  return { DATA_DIR: dataDir }
}
