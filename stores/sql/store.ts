import { type Kysely, type Selectable, sql } from 'kysely'
import { LRUCache } from 'lru-cache'
import { isScope, type Scope } from '../../lib/api-keys.js'
import { cursorRejected } from '../../lib/cursor.js'
import { newSessionId, newStudioId } from '../../lib/ids.js'
import type { Session, Stream, Studio } from '../../schemas/resources.js'
import type { KeyRecord, Page, PageRequest, SqlStore, StudioRecord } from '../types.js'
import type { ApiKeysTable, Database, SessionsTable, StreamsTable, StudiosTable } from './schema.js'

/**
 * Studios found by `getStudio`, kept in memory: the hot read of the API. A studio is never renamed,
 * moved to another account nor deleted (the store only creates them), so an entry cannot go stale
 * and other processes' writes (the CLI, other instances) cannot contradict it; only found studios
 * are kept, so a studio created elsewhere is seen at once. The TTL and bound only cap memory.
 */
const STUDIO_CACHE_MAX = 10_000
const STUDIO_CACHE_TTL_MS = 5 * 60_000

/** The store over SQL, the same queries for SQLite and PostgreSQL (Kysely compiles each dialect). */
export function createSqlStore(db: Kysely<Database>, dialect: SqlStore['dialect']): SqlStore {
  const now = () => new Date().toISOString()
  // Keyed by account and id together: a studio is only ever found through its own account.
  const foundStudios = new LRUCache<string, Studio>({ max: STUDIO_CACHE_MAX, ttl: STUDIO_CACHE_TTL_MS })

  /**
   * The stream of the account's studio, read as the first statement of a transition, before its
   * time is taken. On PostgreSQL the row is locked (FOR UPDATE): a concurrent transition waits
   * here, then reads the row as the other one committed it. On SQLite transactions are serialised
   * by the single connection, and another process's commit after this read makes the write fail
   * (SQLITE_BUSY_SNAPSHOT), which the guard retries whole (stores/sqlite-guard.ts). Either way a
   * transition's time is taken after every earlier transition committed.
   */
  async function lockStream(trx: Kysely<Database>, accountId: string, studioId: string) {
    return trx
      .selectFrom('streams')
      .innerJoin('studios', 'studios.id', 'streams.studio_id')
      .selectAll('streams')
      .where('streams.studio_id', '=', studioId)
      .where('studios.account_id', '=', accountId)
      .$if(dialect === 'postgres', (query) => query.forUpdate('streams'))
      .executeTakeFirst()
  }

  /**
   * Now, but never before `previous` (the stream's last change): updatedAt never decreases and a
   * session never starts before the previous one ended, even when clocks of instances disagree or
   * step back.
   */
  const nowAfter = (previous: string) => {
    const at = now()
    return at > previous ? at : previous
  }

  async function ownedStudio(trx: Kysely<Database>, accountId: string, studioId: string) {
    return trx
      .selectFrom('studios')
      .select('id')
      .where('id', '=', studioId)
      .where('account_id', '=', accountId)
      .executeTakeFirst()
  }

  const keys: SqlStore['keys'] = {
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
          scopes: key.scopes.join(' '),
          created_at: key.createdAt,
          expires_at: key.expiresAt,
          revoked_at: key.revokedAt,
          last_used_at: key.lastUsedAt,
          rate_limit_max: key.rateLimit?.max ?? null,
          rate_limit_window_ms: key.rateLimit?.windowMs ?? null,
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

    async touch(id, at) {
      await db.updateTable('api_keys').set({ last_used_at: at }).where('id', '=', id).execute()
    },
  }

  const studios: SqlStore['studios'] = {
    async listStudios({ accountId }, page) {
      let query = db
        .selectFrom('studios')
        .select(['id', 'name', 'created_at'])
        .where('account_id', '=', accountId)
        .orderBy('created_at')
        .orderBy('id')
        .limit(page.limit + 1)
      if (page.after !== undefined) {
        const after = decodeKeyset(page.after)
        query = query.where((eb) =>
          eb.or([
            eb('created_at', '>', after.sortValue),
            eb.and([eb('created_at', '=', after.sortValue), eb('id', '>', after.id)]),
          ]),
        )
      }
      return toPage(await query.execute(), page, toStudio, (row) => encodeKeyset(row.created_at, row.id))
    },

    async getStudio({ accountId }, studioId) {
      // Length-prefixed, so no pair of ids can spell another pair's key.
      const cacheKey = `${accountId.length}:${accountId}${studioId}`
      const cached = foundStudios.get(cacheKey)
      if (cached) return cached
      if (!canBeStored(studioId)) return undefined
      const row = await db
        .selectFrom('studios')
        .select(['id', 'name', 'created_at'])
        .where('id', '=', studioId)
        .where('account_id', '=', accountId)
        .executeTakeFirst()
      if (!row) return undefined
      const studio = toStudio(row)
      foundStudios.set(cacheKey, studio)
      return studio
    },

    async getStream({ accountId }, studioId) {
      if (!canBeStored(studioId)) return undefined
      const row = await db
        .selectFrom('streams')
        .innerJoin('studios', 'studios.id', 'streams.studio_id')
        .selectAll('streams')
        .where('streams.studio_id', '=', studioId)
        .where('studios.account_id', '=', accountId)
        .executeTakeFirst()
      return row && toStream(row)
    },

    async listSessions({ accountId }, studioId, page) {
      if (!canBeStored(studioId)) return undefined
      const after = page.after === undefined ? undefined : decodeKeyset(page.after)
      return db.transaction().execute(async (trx) => {
        if (!(await ownedStudio(trx, accountId, studioId))) return undefined
        let query = trx
          .selectFrom('sessions')
          .selectAll()
          .where('studio_id', '=', studioId)
          .where('ended_at', 'is not', null)
          .orderBy('started_at', 'desc')
          .orderBy('id', 'desc')
          .limit(page.limit + 1)
        if (after) {
          query = query.where((eb) =>
            eb.or([
              eb('started_at', '<', after.sortValue),
              eb.and([eb('started_at', '=', after.sortValue), eb('id', '<', after.id)]),
            ]),
          )
        }
        return toPage(await query.execute(), page, toSession, (row) => encodeKeyset(row.started_at, row.id))
      })
    },

    async goLive({ accountId }, studioId, { title }) {
      if (!canBeStored(studioId)) return undefined
      return db.transaction().execute(async (trx) => {
        const stream = await lockStream(trx, accountId, studioId)
        if (!stream) return undefined
        if (stream.status === 'live') return toStream(stream)
        const at = nowAfter(stream.updated_at)
        const live = await trx
          .updateTable('streams')
          .set({ status: 'live', title, started_at: at, updated_at: at })
          .where('studio_id', '=', studioId)
          .returningAll()
          .executeTakeFirstOrThrow()
        await trx
          .insertInto('sessions')
          .values({ id: newSessionId(), studio_id: studioId, title, started_at: at, ended_at: null })
          .execute()
        return toStream(live)
      })
    },

    async goOffline({ accountId }, studioId) {
      if (!canBeStored(studioId)) return undefined
      return db.transaction().execute(async (trx) => {
        const stream = await lockStream(trx, accountId, studioId)
        if (!stream) return undefined
        if (stream.status === 'offline') return toStream(stream)
        const at = nowAfter(stream.updated_at)
        const offline = await trx
          .updateTable('streams')
          .set({ status: 'offline', title: null, started_at: null, updated_at: at })
          .where('studio_id', '=', studioId)
          .returningAll()
          .executeTakeFirstOrThrow()
        await trx
          .updateTable('sessions')
          .set({ ended_at: at })
          .where('studio_id', '=', studioId)
          .where('ended_at', 'is', null)
          .execute()
        return toStream(offline)
      })
    },

    async createStudio({ accountId, name, id }) {
      const studio = { id: id ?? newStudioId(), account_id: accountId, name, created_at: now() }
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('studios').values(studio).execute()
        await trx
          .insertInto('streams')
          .values({
            studio_id: studio.id,
            status: 'offline',
            title: null,
            started_at: null,
            updated_at: studio.created_at,
          })
          .execute()
      })
      return toStudioRecord(studio)
    },

    async listAccountStudios(accountId) {
      const rows = await db
        .selectFrom('studios')
        .selectAll()
        .where('account_id', '=', accountId)
        .orderBy('created_at')
        .orderBy('id')
        .execute()
      return rows.map(toStudioRecord)
    },

    async isEmpty() {
      const [key, studio] = await Promise.all([
        db.selectFrom('api_keys').select('id').limit(1).executeTakeFirst(),
        db.selectFrom('studios').select('id').limit(1).executeTakeFirst(),
      ])
      return !key && !studio
    },
  }

  const findRecord = async (keyId: string, key: string) => {
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

  const idempotency: SqlStore['idempotency'] = {
    async claim(keyId, key, fingerprint, at) {
      const inserted = await db
        .insertInto('idempotency_records')
        .values({ key_id: keyId, idempotency_key: key, fingerprint, status_code: null, body: null, created_at: at })
        .onConflict((oc) => oc.columns(['key_id', 'idempotency_key']).doNothing())
        .returning('key_id')
        .executeTakeFirst()
      if (inserted) return { claimed: true }
      return { claimed: false, record: await findRecord(keyId, key) }
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

    find: findRecord,

    async prune(before) {
      const result = await db.deleteFrom('idempotency_records').where('created_at', '<', before).executeTakeFirst()
      return Number(result.numDeletedRows)
    },
  }

  const ping = async () => {
    await sql`select 1`.execute(db)
  }

  return {
    dialect,
    keys,
    studios,
    idempotency,
    settings: {
      async getOrCreate(name, create) {
        await db
          .insertInto('settings')
          .values({ name, value: create() })
          .onConflict((oc) => oc.column('name').doNothing())
          .execute()
        const row = await db.selectFrom('settings').select('value').where('name', '=', name).executeTakeFirstOrThrow()
        return row.value
      },
    },
    ping,
    // Answering is ready enough here; the SQLite store adds a write probe (stores/sqlite-guard.ts).
    ready: ping,
    async close() {
      await db.destroy()
    },
  }
}

/**
 * PostgreSQL text cannot hold NUL (a query with one fails), so no stored id contains it: an id
 * from a client that does has no studio, on either engine, and never reaches the database.
 */
const canBeStored = (text: string) => !text.includes('\0')

/**
 * Keyset positions: the sort value and id of the last row served, as JSON. They travel inside
 * signed cursors, so a malformed one means a cursor issued by something else (another studio
 * service behind the same secret): the same 400 as any foreign cursor.
 */
const encodeKeyset = (sortValue: string, id: string) => JSON.stringify([sortValue, id])

function decodeKeyset(position: string): { sortValue: string; id: string } {
  let decoded: unknown
  try {
    decoded = JSON.parse(position)
  } catch {
    throw cursorRejected()
  }
  if (
    !Array.isArray(decoded) ||
    decoded.length !== 2 ||
    typeof decoded[0] !== 'string' ||
    typeof decoded[1] !== 'string'
  ) {
    throw cursorRejected()
  }
  return { sortValue: decoded[0], id: decoded[1] }
}

/** Rows fetched with `limit + 1`: the extra row only says that another page follows. */
function toPage<Row, T>(rows: Row[], page: PageRequest, convert: (row: Row) => T, positionOf: (row: Row) => string) {
  const hasMore = rows.length > page.limit
  const items = hasMore ? rows.slice(0, page.limit) : rows
  const last = items.at(-1)
  return { items: items.map(convert), next: hasMore && last !== undefined ? positionOf(last) : null } satisfies Page<T>
}

function toKeyRecord(row: Selectable<ApiKeysTable>): KeyRecord {
  return {
    id: row.id,
    hash: row.hash,
    prefix: row.prefix,
    accountId: row.account_id,
    scopes: row.scopes.split(' ').filter(isScope) as Scope[],
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
    rateLimit:
      row.rate_limit_max !== null && row.rate_limit_window_ms !== null
        ? { max: Number(row.rate_limit_max), windowMs: Number(row.rate_limit_window_ms) }
        : null,
  }
}

const toStudio = (row: Pick<Selectable<StudiosTable>, 'id' | 'name' | 'created_at'>): Studio => ({
  id: row.id,
  name: row.name,
  createdAt: row.created_at,
})

const toStudioRecord = (row: Selectable<StudiosTable>): StudioRecord => ({
  ...toStudio(row),
  accountId: row.account_id,
})

const toStream = (row: Selectable<StreamsTable>): Stream => ({
  studioId: row.studio_id,
  status: row.status,
  title: row.title,
  startedAt: row.started_at,
  updatedAt: row.updated_at,
})

const toSession = (row: Selectable<SessionsTable>): Session => ({
  id: row.id,
  studioId: row.studio_id,
  title: row.title,
  startedAt: row.started_at,
  // Only ended sessions are listed.
  endedAt: row.ended_at as string,
})
