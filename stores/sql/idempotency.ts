import type { Kysely } from 'kysely'
import type { IdempotencyRecord, IdempotencyStore } from '../types.js'
import type { Database } from './schema.js'

/** Records of writes sent with an Idempotency-Key, by (API key id, Idempotency-Key). */
export function createIdempotencyRepository(db: Kysely<Database>): IdempotencyStore {
  const find = async (keyId: string, key: string): Promise<IdempotencyRecord | undefined> => {
    const row = await db
      .selectFrom('idempotency_records')
      .select(['fingerprint', 'status_code', 'body', 'created_at'])
      .where('key_id', '=', keyId)
      .where('idempotency_key', '=', key)
      .executeTakeFirst()
    return (
      row && {
        fingerprint: row.fingerprint,
        statusCode: row.status_code === null ? null : Number(row.status_code),
        body: row.body,
        createdAt: row.created_at,
      }
    )
  }

  return {
    async claim(keyId, key, fingerprint, at) {
      const inserted = await db
        .insertInto('idempotency_records')
        .values({ key_id: keyId, idempotency_key: key, fingerprint, status_code: null, body: null, created_at: at })
        .onConflict((oc) => oc.columns(['key_id', 'idempotency_key']).doNothing())
        .returning('key_id')
        .executeTakeFirst()
      if (inserted) return { claimed: true }
      return { claimed: false, record: await find(keyId, key) }
    },

    async complete(keyId, key, createdAt, statusCode, body) {
      await db
        .updateTable('idempotency_records')
        .set({ status_code: statusCode, body })
        .where('key_id', '=', keyId)
        .where('idempotency_key', '=', key)
        .where('created_at', '=', createdAt)
        .execute()
    },

    async discard(keyId, key, createdAt) {
      await db
        .deleteFrom('idempotency_records')
        .where('key_id', '=', keyId)
        .where('idempotency_key', '=', key)
        .where('created_at', '=', createdAt)
        .execute()
    },

    find,

    async prune(before) {
      const result = await db.deleteFrom('idempotency_records').where('created_at', '<', before).executeTakeFirst()
      return Number(result.numDeletedRows)
    },
  }
}
