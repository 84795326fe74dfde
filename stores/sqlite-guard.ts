import { setTimeout as sleep } from 'node:timers/promises'
import type { Kysely } from 'kysely'
import { type StoreFault, StoreUnavailable } from './errors.js'
import type { Database } from './sql/schema.js'
import type { SqlStore } from './types.js'

/**
 * better-sqlite3 is synchronous: while SQLite waits for a lock in its busy handler, the whole
 * event loop waits with it. So SQLite itself never waits here (busy_timeout 0): an operation
 * that finds the database locked by another connection (the command line, another process) is
 * rolled back at once and retried whole, asynchronously, with jittered exponential backoff,
 * until its deadline; then it is a StoreUnavailable (`locked`). Other requests run between the
 * attempts. A store that cannot write (disk full, I/O error, read-only) is a StoreUnavailable at
 * once: waiting would not help. See docs/store-faults.md.
 */
export const SQLITE_LIMITS = {
  /** SQLite's own wait for a lock, which blocks the event loop: none. */
  busyTimeoutMs: 0,
  /** The deadline of one store operation, retries included (STORE_TIMEOUT). */
  timeoutMs: 1000,
  firstRetryMs: 2,
  maxRetryMs: 50,
  /** The readiness write probe's own deadline: within /readyz's 1 s per check. */
  probeTimeoutMs: 500,
} as const

/** The store fault an SQLite error code means, or undefined when it is not one (a bug, a constraint). */
export function sqliteFaultOf(error: unknown): StoreFault | undefined {
  const code = (error as { code?: unknown } | undefined)?.code
  if (typeof code !== 'string') return undefined
  // Extended codes name their primary one first: SQLITE_BUSY_SNAPSHOT, SQLITE_IOERR_WRITE…
  switch (/^SQLITE_[A-Z]+/.exec(code)?.[0]) {
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
    case 'SQLITE_PROTOCOL':
      return 'locked'
    case 'SQLITE_FULL':
      return 'full'
    case 'SQLITE_IOERR':
    case 'SQLITE_READONLY':
    case 'SQLITE_CANTOPEN':
      return 'io'
    case 'SQLITE_NOMEM':
      return 'resources'
  }
  return undefined
}

type Operation = (...args: never[]) => Promise<unknown>

/**
 * `operation` with the retries and the deadline above. The first attempt costs nothing extra: the
 * retry loop starts only when it fails with a lock.
 */
function guarded<F extends Operation>(operation: F, timeoutMs: number): F {
  return ((...args: Parameters<F>) => {
    const deadline = performance.now() + timeoutMs
    return operation(...args).catch((error: unknown) => retry(() => operation(...args), error, deadline))
  }) as F
}

async function retry<T>(attempt: () => Promise<T>, firstError: unknown, deadline: number): Promise<T> {
  let error = firstError
  let delay: number = SQLITE_LIMITS.firstRetryMs
  for (;;) {
    const fault = sqliteFaultOf(error)
    if (fault === undefined) throw error
    const code = (error as { code: string }).code
    const remaining = deadline - performance.now()
    if (fault !== 'locked' || remaining <= 0) throw new StoreUnavailable(fault, { cause: error, code })
    // Jittered, so that two waiting operations do not retry in lockstep.
    await sleep(Math.min(remaining, delay * (0.5 + Math.random())))
    delay = Math.min(delay * 2, SQLITE_LIMITS.maxRetryMs)
    try {
      return await attempt()
    } catch (next) {
      error = next
    }
  }
}

/** Every method of a repository (an object of async methods), guarded. */
function guardAll<T extends object>(repository: T, timeoutMs: number): T {
  const result: Record<string, unknown> = {}
  for (const [name, member] of Object.entries(repository)) {
    result[name] = typeof member === 'function' ? guarded(member.bind(repository) as Operation, timeoutMs) : member
  }
  return result as T
}

/**
 * The SQL store on SQLite with every operation guarded, and readiness that proves the store can
 * write: a one-row upsert, committed (a full disk fails it), within the probe's own deadline (a
 * lock held longer fails it).
 */
export function guardSqliteStore(store: SqlStore, db: Kysely<Database>, timeoutMs: number): SqlStore {
  const ping = guarded(store.ping, timeoutMs)
  const probeWrite = guarded(
    async () => {
      await db
        .insertInto('settings')
        .values({ name: 'readiness_probe', value: new Date().toISOString() })
        .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({ value: eb.ref('excluded.value') })))
        .execute()
    },
    Math.min(timeoutMs, SQLITE_LIMITS.probeTimeoutMs),
  )
  // Every repository of the store (an object member: keys, studios…), so that one added later is guarded too.
  const guardedStore: Record<string, unknown> = { ...store }
  for (const [name, member] of Object.entries(store)) {
    if (typeof member === 'object' && member !== null) guardedStore[name] = guardAll(member, timeoutMs)
  }
  return {
    ...(guardedStore as unknown as SqlStore),
    ping,
    async ready() {
      await ping()
      await probeWrite()
    },
  }
}
