import type { Kysely, Selectable } from 'kysely'
import { isScope, type Scope } from '../../lib/api-keys.js'
import type { KeyChanges, KeyRateLimit, KeyRecord, KeyStore } from '../types.js'
import { createdAfter, encodeKeyset, toPage } from './keyset.js'
import type { ApiKeysTable, Database } from './schema.js'

/** API keys: stored by the SHA-256 of their secret, never the secret. */
export function createKeyRepository(db: Kysely<Database>): KeyStore {
  const byId = async (trx: Kysely<Database>, id: string) => {
    const row = await trx.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst()
    return row && toKeyRecord(row)
  }

  return {
    async findByHash(hash) {
      const row = await db.selectFrom('api_keys').selectAll().where('hash', '=', hash).executeTakeFirst()
      return row && toKeyRecord(row)
    },

    get: (id) => byId(db, id),

    async find(accountId, mode, id) {
      const row = await db
        .selectFrom('api_keys')
        .selectAll()
        .where('id', '=', id)
        .where('account_id', '=', accountId)
        .where('mode', '=', mode)
        .executeTakeFirst()
      return row && toKeyRecord(row)
    },

    async insert(key) {
      await db.insertInto('api_keys').values(toRow(key)).execute()
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

    async listPage(accountId, mode, page) {
      const rows = await db
        .selectFrom('api_keys')
        .selectAll()
        .where('account_id', '=', accountId)
        .where('mode', '=', mode)
        .$if(page.after !== undefined, (query) => query.where(createdAfter(page.after as string)))
        .orderBy('created_at')
        .orderBy('id')
        .limit(page.limit + 1)
        .execute()
      return toPage(rows, page, toKeyRecord, (row) => encodeKeyset(row.created_at, row.id))
    },

    async revoke(id, at) {
      return db.transaction().execute(async (trx) => {
        await trx
          .updateTable('api_keys')
          .set({ revoked_at: at })
          .where('id', '=', id)
          .where('revoked_at', 'is', null)
          .execute()
        return byId(trx, id)
      })
    },

    async roll(id, successor, expiresAt) {
      return db.transaction().execute(async (trx) => {
        const replaced = await trx
          .updateTable('api_keys')
          .set((eb) => ({
            replaced_by: successor.id,
            // Only ever earlier: a key that expires before the grace period ends keeps its expiry.
            expires_at: eb
              .case()
              .when(eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', expiresAt)]))
              .then(expiresAt)
              .else(eb.ref('expires_at'))
              .end(),
          }))
          .where('id', '=', id)
          .where('replaced_by', 'is', null)
          .executeTakeFirst()
        if (Number(replaced.numUpdatedRows) === 0) return undefined
        await trx.insertInto('api_keys').values(toRow(successor)).execute()
        return byId(trx, id)
      })
    },

    async update(id, changes) {
      const set = changesToRow(changes)
      if (Object.keys(set).length > 0) await db.updateTable('api_keys').set(set).where('id', '=', id).execute()
      return byId(db, id)
    },

    async touch(id, at) {
      await db.updateTable('api_keys').set({ last_used_at: at }).where('id', '=', id).execute()
    },
  }
}

function toRow(key: KeyRecord) {
  return {
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
    name: key.name,
    created_by: key.createdBy,
    replaced_by: key.replacedBy,
  }
}

function changesToRow(changes: KeyChanges) {
  return {
    ...(changes.name === undefined ? {} : { name: changes.name }),
    ...(changes.scopes === undefined ? {} : { scopes: changes.scopes.join(' ') }),
    ...(changes.rateLimits === undefined ? {} : { rate_limits: encodeRateLimits(changes.rateLimits) }),
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
    name: row.name,
    createdBy: row.created_by,
    replacedBy: row.replaced_by,
  }
}

const encodeRateLimits = (limits: readonly KeyRateLimit[] | null) =>
  limits === null || limits.length === 0 ? null : JSON.stringify(limits.map(({ max, windowMs }) => ({ max, windowMs })))

function decodeRateLimits(text: string | null): KeyRateLimit[] | null {
  if (text === null) return null
  const limits = JSON.parse(text) as { max: unknown; windowMs: unknown }[]
  return limits.map(({ max, windowMs }) => ({ max: Number(max), windowMs: Number(windowMs) }))
}
