import type { Kysely } from 'kysely'
import t from 'tap'
import { migrateToLatest } from '../stores/sql/migrations.js'
import { freshStoreEnv } from './helpers/database.js'
import { bearer, startGateway } from './helpers/gateway.js'
import { currentSchema, rawDatabase } from './helpers/stored-rows.js'

t.test('the store survives a restart (SQLite file, or PostgreSQL schema)', async (t) => {
  const first = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
  const { secret } = await first.key()
  const studioId = await first.studio('acct_test', 'Persistent')
  await first.app.inject({
    method: 'POST',
    url: `/v1/studios/${studioId}/stream/go-live`,
    headers: bearer(secret),
    payload: { title: 'kept' },
  })
  const firstPage = (await first.app.inject({ url: '/v1/studios?limit=1', headers: bearer(secret) })).json()
  await first.close()

  const second = await startGateway(t, { storeEnv: first.storeEnv, env: { WRITES_ENABLED: 'true' } })
  const studio = await second.app.inject({ url: `/v1/studios/${studioId}`, headers: bearer(secret) })
  t.equal(studio.statusCode, 200, 'the key and the studio are still there')
  t.equal(studio.json().name, 'Persistent')
  const stream = (await second.app.inject({ url: `/v1/studios/${studioId}/stream`, headers: bearer(secret) })).json()
  t.match(stream, { status: 'live', title: 'kept' }, 'the live stream is still live')
  t.same(
    (await second.app.inject({ url: '/v1/studios?limit=1', headers: bearer(secret) })).json(),
    firstPage,
    'cursors stay valid across a restart: the signing secret is stored',
  )
})

t.test('migration 0003 carries a key limit of an older store over as its first policy', async (t) => {
  const storeEnv = await freshStoreEnv(t)
  const db = await rawDatabase(storeEnv)
  await migrateToLatest(
    db,
    storeEnv.DATABASE_URL === undefined ? undefined : await currentSchema(db),
    '0002_idempotency',
  )
  const old = db as unknown as Kysely<Record<string, Record<string, unknown>>>
  const row = {
    hash: 'h',
    prefix: 'sk_live_0000',
    account_id: 'acct_old',
    scopes: 'studio:read',
    created_at: '2026-01-01T00:00:00.000Z',
    expires_at: null,
    revoked_at: null,
    last_used_at: null,
  }
  await old
    .insertInto('api_keys')
    .values([
      { ...row, id: 'key_limited', hash: 'h1', rate_limit_max: 30, rate_limit_window_ms: 60_000 },
      { ...row, id: 'key_default', hash: 'h2', rate_limit_max: null, rate_limit_window_ms: null },
    ])
    .execute()
  await db.destroy()

  const gw = await startGateway(t, { storeEnv })
  const keys = await gw.store.keys.list('acct_old')
  t.same(
    keys.map((key) => [key.id, key.rateLimits]),
    [
      ['key_default', null],
      ['key_limited', [{ max: 30, windowMs: 60_000 }]],
    ].sort(),
  )
})
