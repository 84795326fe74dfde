import type { Kysely, Selectable } from 'kysely'
import type { Mode } from '../../lib/api-keys.js'
import { newSessionId, newStudioId } from '../../lib/ids.js'
import type { Session, Stream, Studio } from '../../schemas/resources.js'
import type { CallContext, StudioAdmin, StudioRecord, StudioService } from '../types.js'
import { decodeKeyset, encodeKeyset, toPage } from './keyset.js'
import type { Database, SessionsTable, StreamsTable, StudiosTable } from './schema.js'

/**
 * Studios, their stream and sessions over SQL, always through the caller's account and mode: a
 * studio of another account, or of the account's other mode (its sandbox, or its live data), is
 * reported exactly as a missing one (undefined).
 */
export function createStudioRepository(
  db: Kysely<Database>,
  dialect: 'sqlite' | 'postgres',
): StudioService & StudioAdmin {
  const now = () => new Date().toISOString()
  /**
   * The stream of the account's studio, read as the first statement of a transition, before its
   * time is taken. On PostgreSQL the row is locked (FOR UPDATE): a concurrent transition waits
   * here, then reads the row as the other one committed it. On SQLite transactions are serialised
   * by the single connection, and another process's commit after this read makes the write fail
   * (SQLITE_BUSY_SNAPSHOT), which the guard retries whole (stores/sqlite-guard.ts). Either way a
   * transition's time is taken after every earlier transition committed.
   */
  async function lockStream(trx: Kysely<Database>, { accountId, mode }: CallContext, studioId: string) {
    return trx
      .selectFrom('streams')
      .innerJoin('studios', 'studios.id', 'streams.studio_id')
      .selectAll('streams')
      .where('streams.studio_id', '=', studioId)
      .where('studios.account_id', '=', accountId)
      .where('studios.mode', '=', mode)
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

  /**
   * A stream's transition to `to`, in one transaction: the stream is read (and locked), a stream
   * already in that state is answered as it is (a repeated go-live changes nothing), otherwise
   * `change` writes it at a time after its last change.
   */
  async function transition(
    ctx: CallContext,
    studioId: string,
    to: Stream['status'],
    change: (trx: Kysely<Database>, at: string) => Promise<Selectable<StreamsTable>>,
  ): Promise<Stream | undefined> {
    if (!canBeStored(studioId)) return undefined
    return db.transaction().execute(async (trx) => {
      const stream = await lockStream(trx, ctx, studioId)
      if (!stream) return undefined
      if (stream.status === to) return toStream(stream)
      return toStream(await change(trx, nowAfter(stream.updated_at)))
    })
  }

  async function ownedStudio(trx: Kysely<Database>, { accountId, mode }: CallContext, studioId: string) {
    return trx
      .selectFrom('studios')
      .select('id')
      .where('id', '=', studioId)
      .where('account_id', '=', accountId)
      .where('mode', '=', mode)
      .executeTakeFirst()
  }

  return {
    async listStudios({ accountId, mode }, page) {
      let query = db
        .selectFrom('studios')
        .select(['id', 'name', 'created_at'])
        .where('account_id', '=', accountId)
        .where('mode', '=', mode)
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

    async getStudio({ accountId, mode }, studioId) {
      if (!canBeStored(studioId)) return undefined
      const row = await db
        .selectFrom('studios')
        .select(['id', 'name', 'created_at'])
        .where('id', '=', studioId)
        .where('account_id', '=', accountId)
        .where('mode', '=', mode)
        .executeTakeFirst()
      return row && toStudio(row)
    },

    async getStream({ accountId, mode }, studioId) {
      if (!canBeStored(studioId)) return undefined
      const row = await db
        .selectFrom('streams')
        .innerJoin('studios', 'studios.id', 'streams.studio_id')
        .selectAll('streams')
        .where('streams.studio_id', '=', studioId)
        .where('studios.account_id', '=', accountId)
        .where('studios.mode', '=', mode)
        .executeTakeFirst()
      return row && toStream(row)
    },

    async listSessions(ctx, studioId, page) {
      if (!canBeStored(studioId)) return undefined
      const after = page.after === undefined ? undefined : decodeKeyset(page.after)
      return db.transaction().execute(async (trx) => {
        if (!(await ownedStudio(trx, ctx, studioId))) return undefined
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

    async goLive(ctx, studioId, { title }) {
      return transition(ctx, studioId, 'live', async (trx, at) => {
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
        return live
      })
    },

    async goOffline(ctx, studioId) {
      return transition(ctx, studioId, 'offline', async (trx, at) => {
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
        return offline
      })
    },

    async createStudio({ accountId, name, id, mode = 'live' }) {
      const studio = { id: id ?? newStudioId(), account_id: accountId, mode, name, created_at: now() }
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

    async listAccountStudios(accountId, mode) {
      const rows = await db
        .selectFrom('studios')
        .selectAll()
        .where('account_id', '=', accountId)
        .$if(mode !== undefined, (query) => query.where('mode', '=', mode as Mode))
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
}

/**
 * PostgreSQL text cannot hold NUL (a query with one fails), so no stored id contains it: an id
 * from a client that does has no studio, on either engine, and never reaches the database.
 */
const canBeStored = (text: string) => !text.includes('\0')

const toStudio = (row: Pick<Selectable<StudiosTable>, 'id' | 'name' | 'created_at'>): Studio => ({
  id: row.id,
  name: row.name,
  createdAt: row.created_at,
})

const toStudioRecord = (row: Selectable<StudiosTable>): StudioRecord => ({
  ...toStudio(row),
  accountId: row.account_id,
  mode: row.mode,
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
