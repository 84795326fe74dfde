import pg from 'pg'
import t from 'tap'
import { toApiError } from '../lib/errors.js'
import { StoreUnavailable } from '../stores/errors.js'
import { isConnectionFault, sqlStateFault } from '../stores/postgres-faults.js'
import { sqliteFaultOf } from '../stores/sqlite-guard.js'

// The classification of store faults, rule by rule; test/postgres-faults.test.ts and
// test/sqlite-faults.test.ts drive the real faults end to end.

t.test('a store fault is 503 unavailable with Retry-After, its detail kept for the log only', async (t) => {
  const cause = new Error('database "prod" is not currently accepting connections')
  const refused = toApiError(new StoreUnavailable('refused', { cause, code: '55000' }))
  t.equal(refused.code, 'unavailable')
  t.equal(refused.statusCode, 503)
  t.same(refused.headers, { 'retry-after': '1' })
  t.notMatch(refused.message, /prod|55000|accepting/, 'the message shown to the client names nothing internal')
  t.match(refused.cause, { fault: 'refused', code: '55000', cause }, 'the log gets the fault, the code and the cause')

  t.same(toApiError(new StoreUnavailable('full')).headers, { 'retry-after': '5' }, 'a full disk asks for a longer wait')
  t.same(toApiError(new StoreUnavailable('locked', { retryAfterSeconds: 2 })).headers, { 'retry-after': '2' })
  t.equal(toApiError(new Error('a bug')).code, 'internal', 'anything else stays internal')
})

t.test('PostgreSQL: a statement fails as the store being unavailable by SQLSTATE class', async (t) => {
  const cases: [string, string | undefined][] = [
    ['08006', 'lost'], // connection failure
    ['57P01', 'lost'], // admin shutdown
    ['57P04', 'lost'], // database dropped
    ['57014', 'timeout'], // statement_timeout
    ['57P03', 'refused'], // cannot connect now
    ['53300', 'resources'], // too many connections
    ['53200', 'resources'], // out of memory
    ['53100', 'full'], // disk full
    ['58030', 'io'], // I/O error
    ['40001', 'conflict'], // serialization failure
    ['40P01', 'conflict'], // deadlock
    ['55P03', 'locked'], // lock not available
    ['28P01', 'refused'], // password authentication failed
    ['3D000', 'refused'], // database does not exist
    ['23505', undefined], // unique violation: the statement's own
    ['42P01', undefined], // undefined table: a bug or a broken deployment
    ['22P02', undefined], // invalid text representation
    ['55000', undefined], // object not in prerequisite state, while a statement runs
  ]
  for (const [code, fault] of cases) t.equal(sqlStateFault(code), fault, `${code} → ${fault ?? 'not a store fault'}`)
})

t.test('PostgreSQL: a connection that failed is never reused', async (t) => {
  const databaseError = (code: string) => Object.assign(new pg.DatabaseError('x', 1, 'error'), { code })
  t.ok(isConnectionFault(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', syscall: 'read' })))
  t.ok(isConnectionFault(Object.assign(new Error('any errno'), { code: 'EWHATEVER', syscall: 'connect' })))
  t.ok(isConnectionFault(new Error('Connection terminated unexpectedly')))
  t.ok(isConnectionFault(new Error('Query read timeout')))
  t.ok(isConnectionFault(databaseError('08006')))
  t.ok(isConnectionFault(databaseError('57P01')))
  t.notOk(isConnectionFault(databaseError('57014')), 'a cancelled statement leaves the connection usable')
  t.notOk(isConnectionFault(databaseError('23505')))
  t.notOk(isConnectionFault(new TypeError('a bug')))
})

t.test(
  'SQLite: locks are retried, a store that cannot write is unavailable at once, the rest is not a fault',
  async (t) => {
    const cases: [string, string | undefined][] = [
      ['SQLITE_BUSY', 'locked'],
      ['SQLITE_BUSY_SNAPSHOT', 'locked'],
      ['SQLITE_LOCKED_SHAREDCACHE', 'locked'],
      ['SQLITE_FULL', 'full'],
      ['SQLITE_IOERR_WRITE', 'io'],
      ['SQLITE_IOERR', 'io'],
      ['SQLITE_READONLY_DBMOVED', 'io'],
      ['SQLITE_CANTOPEN', 'io'],
      ['SQLITE_NOMEM', 'resources'],
      ['SQLITE_CONSTRAINT_PRIMARYKEY', undefined],
      ['SQLITE_CORRUPT', undefined],
      ['SQLITE_ERROR', undefined],
    ]
    for (const [code, fault] of cases) {
      t.equal(
        sqliteFaultOf(Object.assign(new Error(code), { code })),
        fault,
        `${code} → ${fault ?? 'not a store fault'}`,
      )
    }
    t.equal(sqliteFaultOf(new Error('no code')), undefined)
  },
)
