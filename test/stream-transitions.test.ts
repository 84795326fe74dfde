import { createRequire } from 'node:module'
import { join } from 'node:path'
import pg from 'pg'
import type { Test } from 'tap'
import t from 'tap'
import { SQLITE_FILE } from '../stores/sqlite.js'
import { testEngine } from './helpers/database.js'
import { bearer, startGateway, type TestGateway } from './helpers/gateway.js'

// Concurrent go-live / go-offline on one studio, on the engine under test: sessions never
// overlap, and the stream's updatedAt never goes backwards in the order the changes commit.

interface Logged {
  seq: number
  status: string
  updated_at: string
}
interface SessionRow {
  id: string
  started_at: string
  ended_at: string | null
}

/**
 * Logs every change of the studio's stream row, in the order the changes are made, with a
 * trigger on the gateway's own store. Changes of one row are serialised by its lock until
 * commit (PostgreSQL) or by the single writer (SQLite): the log's order is the commit order.
 */
async function transitionLog(t: Test, gw: TestGateway, studioId: string) {
  if (testEngine === 'postgres') {
    const client = new pg.Client({ connectionString: gw.storeEnv.DATABASE_URL })
    await client.connect()
    t.teardown(() => client.end())
    const { rows } = await client.query<{ schema: string }>('select current_schema() as schema')
    const schema = `"${rows[0]?.schema}"`
    await client.query(`
      create table ${schema}.transition_log (seq bigserial primary key, status text not null, updated_at text not null);
      create function ${schema}.log_transition() returns trigger language plpgsql as $$
        begin
          insert into ${schema}.transition_log (status, updated_at) values (new.status, new.updated_at);
          return new;
        end $$;
      create trigger log_transition after update on ${schema}.streams for each row execute function ${schema}.log_transition();
    `)
    return {
      changes: async () =>
        (
          await client.query<Logged>(
            `select seq::int as seq, status, updated_at from ${schema}.transition_log order by seq`,
          )
        ).rows,
      sessions: async () =>
        (
          await client.query<SessionRow>(
            `select id, started_at, ended_at from ${schema}.sessions where studio_id = $1 order by started_at, id`,
            [studioId],
          )
        ).rows,
    }
  }
  const Database = createRequire(import.meta.url)('better-sqlite3') as typeof import('better-sqlite3')
  const db = new Database(join(gw.storeEnv.DATA_DIR as string, SQLITE_FILE))
  t.teardown(() => db.close())
  db.exec(`
    create table transition_log (seq integer primary key autoincrement, status text not null, updated_at text not null);
    create trigger log_transition after update on streams for each row begin
      insert into transition_log (status, updated_at) values (new.status, new.updated_at);
    end;
  `)
  return {
    changes: async () =>
      db.prepare('select seq, status, updated_at from transition_log order by seq').all() as Logged[],
    sessions: async () =>
      db
        .prepare('select id, started_at, ended_at from sessions where studio_id = ? order by started_at, id')
        .all(studioId) as SessionRow[],
  }
}

t.test(
  `concurrent go-live / go-offline on one studio (${testEngine}): sessions never overlap, updatedAt never decreases in commit order`,
  async (t) => {
    // Eight transitions queue on one row's lock, each holding it for a few round trips: on a test
    // machine busy with other files, the last in the queue can wait past the default STORE_TIMEOUT
    // (1 s) and be answered 503 unavailable, as the contract allows. This test is about order, not
    // latency: the deadline is raised so that every call commits.
    const gw = await startGateway(t, {
      env: { WRITES_ENABLED: 'true', RATE_LIMIT_MAX: '100000', STORE_TIMEOUT: '10s' },
    })
    const { secret } = await gw.key()
    const studioId = await gw.studio('acct_test')
    const log = await transitionLog(t, gw, studioId)
    // The key's verification is cached before the burst (it would otherwise be looked up by each worker at once).
    t.equal((await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })).statusCode, 200)

    const calls = 600
    const concurrency = 8
    const statuses = new Map<number, number>()
    const refusals: string[] = []
    let next = 0
    const worker = async () => {
      while (next < calls) {
        const n = next++
        const live = Math.random() < 0.5
        const res = await gw.app.inject({
          method: 'POST',
          url: `/v1/studios/${studioId}/stream/${live ? 'go-live' : 'go-offline'}`,
          headers: bearer(secret),
          ...(live ? { payload: { title: `take ${n}` } } : {}),
        })
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
        if (res.statusCode !== 200 && refusals.length < 3) refusals.push(res.body.slice(0, 300))
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
    t.same(
      [...statuses.keys()],
      [200],
      `every call answered 200 (${JSON.stringify(Object.fromEntries(statuses))}) ${refusals.join(' ')}`,
    )

    const changes = await log.changes()
    t.ok(changes.length > 10, `${changes.length} changes of the stream`)
    const backwards = changes.filter((change, i) => i > 0 && change.updated_at < (changes[i - 1] as Logged).updated_at)
    t.same(
      backwards.map((change) => change.seq),
      [],
      'updatedAt never decreases from one committed change to the next',
    )
    const repeated = changes.filter((change, i) => i > 0 && change.status === (changes[i - 1] as Logged).status)
    t.same(
      repeated.map((change) => change.seq),
      [],
      'every committed change is a transition (live, offline, live…)',
    )

    const sessions = await log.sessions()
    t.equal(sessions.length, changes.filter((change) => change.status === 'live').length, 'a session per go-live')
    const overlapping = sessions.filter((session, i) => {
      const previous = sessions[i - 1]
      return previous !== undefined && (previous.ended_at === null || previous.ended_at > session.started_at)
    })
    t.same(
      overlapping.map((session) => session.id),
      [],
      'no session starts before the previous one ended',
    )
    t.ok(
      sessions.every((session) => session.ended_at === null || session.started_at <= session.ended_at),
      'every session ends after it starts',
    )
  },
)
