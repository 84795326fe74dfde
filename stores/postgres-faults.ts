import type { PostgresPool, PostgresPoolClient } from 'kysely'
import pg from 'pg'
import { type StoreFault, StoreUnavailable } from './errors.js'

/**
 * Faults of PostgreSQL, classified by where they happen:
 *   - while connecting or waiting for a pooled connection, anything that fails means the store
 *     cannot serve now (it refuses connections, is unreachable, the pool is saturated): always
 *     StoreUnavailable, whatever the SQLSTATE or errno;
 *   - while a statement runs, by SQLSTATE class: connection exceptions, operator intervention,
 *     insufficient resources and system errors are the store being unavailable; any other
 *     SQLSTATE is about the statement (a bug, a constraint) and stays what it is.
 * See docs/store-faults.md.
 */

/** A rollback after the deadline still gets this long, so the connection goes back to the pool clean. */
const ROLLBACK_GRACE_MS = 200

export interface FaultAwarePoolOptions {
  /**
   * The deadline of one checkout, from asking for a connection to the last statement run on it
   * (a transaction, or a single statement): STORE_TIMEOUT.
   */
  readonly timeoutMs: number
}

/**
 * The pg pool as Kysely sees it, with four repairs:
 *   - one deadline per checkout: waiting for a connection (or making one) and every statement on
 *     it share `timeoutMs`, so a saturated pool answers within it rather than within the sum of
 *     the pool's wait and each statement's timeout;
 *   - a connection that failed (reset, timed out) is destroyed on release instead of going back to
 *     the pool, where it would fail the next query too;
 *   - a pooled connection that died unnoticed (the database restarted, a network path was cut and
 *     healed) fails the first query of a checkout at once: that query moves to a new connection,
 *     once, within the same deadline, so the first requests after an outage are served rather
 *     than answered 503. Not after a timeout: the deadline is spent;
 *   - a failure that means "the database cannot serve now" becomes a StoreUnavailable.
 */
export function faultAwarePool(pool: pg.Pool, { timeoutMs }: FaultAwarePoolOptions): PostgresPool {
  const poolSize = pool.options.max

  const acquire = async (deadline: number): Promise<pg.PoolClient> => {
    // Every connection busy and none idle: this request queues for one.
    const queued = pool.totalCount >= poolSize && pool.idleCount === 0
    const remaining = deadline - performance.now()
    if (remaining <= 0) throw new StoreUnavailable(queued ? 'saturated' : 'timeout')
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), remaining)
    })
    const pending = pool.connect()
    try {
      const client = await Promise.race([pending, expired])
      if (client === undefined) {
        // The pool may still hand this request a connection later: it goes straight back.
        pending.then(
          (late) => late.release(),
          () => {},
        )
        throw new StoreUnavailable(queued ? 'saturated' : 'unreachable')
      }
      return client
    } catch (error) {
      throw error instanceof StoreUnavailable ? error : connectingFault(error)
    } finally {
      clearTimeout(timer)
    }
  }

  return {
    async connect() {
      const deadline = performance.now() + timeoutMs
      // Undefined once released early: a stale connection whose replacement could not be had.
      let client: pg.PoolClient | undefined = await acquire(deadline)
      let fault: Error | undefined
      let used = false
      const run = async (connection: pg.PoolClient, text: string, parameters: readonly unknown[]) => {
        const remaining = deadline - performance.now()
        const timeout = text === 'rollback' ? Math.max(remaining, ROLLBACK_GRACE_MS) : remaining
        // Nothing is sent: the connection stays usable.
        if (timeout <= 0) throw new StoreUnavailable('timeout')
        try {
          // pg reads a per-query `query_timeout` (client.js), which its types do not declare.
          const query = { text, values: parameters as unknown[], query_timeout: Math.ceil(timeout) }
          return await connection.query(query as pg.QueryConfig)
        } catch (error) {
          if (isConnectionFault(error)) fault = error as Error
          throw error
        }
      }
      const adapter = {
        async query(text: string, parameters: readonly unknown[]) {
          // After a connection fault the rest of a transaction (its rollback) fails at once
          // instead of waiting out another timeout.
          if (fault !== undefined || client === undefined) {
            throw new StoreUnavailable('lost', { cause: loggable(fault ?? new Error('the connection was released')) })
          }
          const first = !used
          used = true
          try {
            return await run(client, text, parameters)
          } catch (error) {
            if (!first || fault === undefined || isTimeout(fault)) throw statementFault(error)
            client.release(fault)
            client = undefined
            client = await acquire(deadline)
            fault = undefined
            try {
              return await run(client, text, parameters)
            } catch (retryError) {
              throw statementFault(retryError)
            }
          }
        },
        release(destroy?: boolean) {
          client?.release(fault ?? destroy === true)
          client = undefined
        },
      }
      return adapter as unknown as PostgresPoolClient
    },
    end: () => pool.end(),
  }
}

const isTimeout = (error: Error) => /timeout/i.test(error.message)

// pg reports these without a code.
const CONNECTION_FAILURES =
  /^(Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|Client was closed)/

/** The connection itself failed: it must not serve another query. */
export function isConnectionFault(error: unknown): boolean {
  if (error instanceof pg.DatabaseError) {
    // The server ends the session after these: a connection exception, a shutdown, the
    // database dropped, a session or transaction idle for too long.
    return /^(08|57P0[1-5]|25P03)/.test(error.code ?? '')
  }
  const { syscall, message } = (error ?? {}) as { syscall?: unknown; message?: unknown }
  // A system error on the socket (ECONNRESET, EPIPE, ETIMEDOUT…), whichever errno it is.
  if (typeof syscall === 'string') return true
  return typeof message === 'string' && CONNECTION_FAILURES.test(message)
}

/** Anything that fails while connecting or waiting for a connection: the store cannot serve now. */
function connectingFault(error: unknown): StoreUnavailable {
  const code = codeOf(error)
  const message = (error as { message?: unknown } | undefined)?.message
  const fault: StoreFault =
    error instanceof pg.DatabaseError
      ? 'refused'
      : typeof message === 'string' && message.startsWith('timeout exceeded when trying to connect')
        ? 'saturated'
        : 'unreachable'
  return new StoreUnavailable(fault, { cause: loggable(error), code })
}

/** A failure of a statement: a StoreUnavailable when it means the store cannot serve now, else as it is. */
function statementFault(error: unknown): unknown {
  if (error instanceof StoreUnavailable) return error
  const code = codeOf(error)
  let fault: StoreFault | undefined
  if (error instanceof pg.DatabaseError) fault = sqlStateFault(error.code ?? '')
  else if (isConnectionFault(error)) fault = isTimeout(error as Error) ? 'timeout' : 'lost'
  return fault === undefined ? error : new StoreUnavailable(fault, { cause: loggable(error), code })
}

/**
 * SQLSTATEs that mean "the database cannot serve now", not "this statement is wrong": by class,
 * with the few codes of other classes that mean the same.
 */
export function sqlStateFault(code: string): StoreFault | undefined {
  switch (code) {
    case '57014': // query_canceled: statement_timeout
      return 'timeout'
    case '57P03': // cannot_connect_now: starting up, shutting down
      return 'refused'
    case '53100': // disk_full
      return 'full'
    case '40001': // serialization_failure
    case '40P01': // deadlock_detected
      return 'conflict'
    case '55P03': // lock_not_available
      return 'locked'
    case '25P03': // idle_in_transaction_session_timeout
      return 'lost'
  }
  switch (code.slice(0, 2)) {
    case '08': // connection exception
    case '57': // operator intervention: shutdown, the database dropped
      return 'lost'
    case '28': // invalid authorization: a login refused
    case '3D': // invalid catalog name: the database does not exist
      return 'refused'
    case '53': // insufficient resources: out of memory, too many connections
      return 'resources'
    case '58': // system error: I/O
      return 'io'
  }
  return undefined
}

const codeOf = (error: unknown) => {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? code : undefined
}

/**
 * What can be logged of a driver error: its message and code. pg-pool attaches the client to
 * some errors, and the client holds the connection parameters, password included.
 */
export function loggable(error: unknown): Error {
  const { message, code, stack } = (error ?? {}) as { message?: unknown; code?: unknown; stack?: unknown }
  const safe = new Error(typeof message === 'string' ? message : String(error))
  if (typeof code === 'string') Object.assign(safe, { code })
  if (typeof stack === 'string') safe.stack = stack
  return safe
}
