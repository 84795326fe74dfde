import type { Kysely, Selectable } from 'kysely'
import { isScope, type Scope } from '../../lib/api-keys.js'
import type { KeyRateLimit, KeyRecord, KeyStore } from '../types.js'
import type { ApiKeysTable, Database } from './schema.js'

/** API keys: stored by the SHA-256 of their secret, never the secret. */
export function createKeyRepository(db: Kysely<Database>): KeyStore {
  return {
    async findByHash(hash) {
      const row = await db.selectFrom('api_keys').selectAll().where('hash', '=', hash).executeTakeFirst()
      return row && toKeyRecord(row)
    },

    async insert(key) {
      await db
        .insertInto('api_keys')
        .values({
          id: key.id,
          hash: key.hash,
          prefix: key.prefix,
          account_id: key.accountId,
          mode: key.mode,
          scopes: key.scopes.join(' '),
          created_at: key.createdAt,
          expires_at: key.expiresAt,
          revoked_at: key.revokedAt,
          last_used_at: key.lastUsedAt,
          rate_limits: encodeRateLimits(key.rateLimits),
        })
        .execute()
    },

    async list(accountId) {
      const rows = await db
        .selectFrom('api_keys')
        .selectAll()
        .where('account_id', '=', accountId)
        .orderBy('created_at')
        .orderBy('id')
        .execute()
      return rows.map(toKeyRecord)
    },

    async revoke(id, at) {
      return db.transaction().execute(async (trx) => {
        await trx
          .updateTable('api_keys')
          .set({ revoked_at: at })
          .where('id', '=', id)
          .where('revoked_at', 'is', null)
          .execute()
        const row = await trx.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst()
        return row && toKeyRecord(row)
      })
    },

    async setRateLimits(id, rateLimits) {
      await db
        .updateTable('api_keys')
        .set({ rate_limits: encodeRateLimits(rateLimits) })
        .where('id', '=', id)
        .execute()
      const row = await db.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst()
      return row && toKeyRecord(row)
    },

    async touch(id, at) {
      await db.updateTable('api_keys').set({ last_used_at: at }).where('id', '=', id).execute()
    },
  }
}

function toKeyRecord(row: Selectable<ApiKeysTable>): KeyRecord {
  return {
    id: row.id,
    hash: row.hash,
    prefix: row.prefix,
    accountId: row.account_id,
    mode: row.mode,
    scopes: row.scopes.split(' ').filter(isScope) as Scope[],
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
    rateLimits: decodeRateLimits(row.rate_limits),
  }
}

const encodeRateLimits = (limits: readonly KeyRateLimit[] | null) =>
  limits === null || limits.length === 0 ? null : JSON.stringify(limits.map(({ max, windowMs }) => ({ max, windowMs })))

function decodeRateLimits(text: string | null): KeyRateLimit[] | null {
  if (text === null) return null
  const limits = JSON.parse(text) as { max: unknown; windowMs: unknown }[]
  return limits.map(({ max, windowMs }) => ({ max: Number(max), windowMs: Number(windowMs) }))
}
