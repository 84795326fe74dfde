/**
 * What can go wrong below the routes, said in the stores' own terms: no HTTP here. The error
 * catalog (lib/errors.ts) maps each to a code of the contract: StoreUnavailable and
 * UpstreamUnavailable to `503 unavailable` with their Retry-After (see docs/store-faults.md),
 * UpstreamBrokeContract to `502 bad_gateway`, BadPosition to `400 invalid_request`.
 */

/**
 * Why the store could not serve:
 *   - `refused`: the database refused a new connection (it does not accept connections, was
 *     dropped, is starting up or shutting down, has too many, or the login failed);
 *   - `unreachable`: no connection could be made (network, name resolution, connect timeout);
 *   - `saturated`: no pooled connection became free within the operation's deadline;
 *   - `timeout`: the operation's deadline passed while its statements ran (or one was cancelled);
 *   - `lost`: the connection failed while a statement ran;
 *   - `locked`: another writer held the lock until the deadline;
 *   - `conflict`: a serialization failure or a deadlock the database resolved by aborting us;
 *   - `full`: the disk (or the database's space) is full;
 *   - `io`: the database's storage failed (I/O error, read-only file system);
 *   - `resources`: the database is out of another resource (memory, a limit).
 */
export type StoreFault =
  | 'refused'
  | 'unreachable'
  | 'saturated'
  | 'timeout'
  | 'lost'
  | 'locked'
  | 'conflict'
  | 'full'
  | 'io'
  | 'resources'

/** Faults that need an operator (space, storage): a client is asked to wait longer than for the others. */
const SLOW_TO_CLEAR: ReadonlySet<StoreFault> = new Set(['full', 'io'])

const MESSAGES: Partial<Record<StoreFault, string>> = {
  locked: 'the database is busy with another writer; retry shortly',
  full: 'the database cannot store more data right now; retry later',
  io: 'the database cannot store more data right now; retry later',
}

export interface StoreUnavailableOptions {
  /** The driver's error, stripped of anything not fit for a log (connection parameters). */
  readonly cause?: unknown
  /** The driver's code: a SQLSTATE, an `SQLITE_…` code, an errno. For logs. */
  readonly code?: string
  readonly retryAfterSeconds?: number
}

/**
 * The store cannot serve right now; a retry later may succeed. Its message is fit for a client
 * (no host, no driver text); the fault, the driver's code and the cause are for the log. No stack
 * trace: thrown for every request during an outage, and the cause carries the driver's.
 */
export class StoreUnavailable extends Error {
  readonly fault: StoreFault
  readonly code: string | undefined
  readonly retryAfterSeconds: number

  constructor(fault: StoreFault, options: StoreUnavailableOptions = {}) {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(
      MESSAGES[fault] ?? 'the database is temporarily unavailable; retry shortly',
      options.cause === undefined ? undefined : { cause: options.cause },
    )
    Error.stackTraceLimit = limit
    this.name = 'StoreUnavailable'
    this.fault = fault
    this.code = options.code
    this.retryAfterSeconds = options.retryAfterSeconds ?? (SLOW_TO_CLEAR.has(fault) ? 5 : 1)
  }
}

/** Errors of this module skip the stack trace: they are expected outcomes with a cause that has one. */
abstract class DomainError extends Error {
  constructor(message: string, cause?: unknown) {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message, cause === undefined ? undefined : { cause })
    Error.stackTraceLimit = limit
    this.name = new.target.name
  }
}

/** The upstream studio service could not be reached, or did not answer in time. Transient. */
export class UpstreamUnavailable extends DomainError {
  constructor(
    message: string,
    cause: unknown,
    /** It was reached but too slow, rather than unreachable. */
    readonly slow: boolean,
  ) {
    super(message, cause)
  }
}

/** The upstream studio service answered, but not what its contract promises. */
export class UpstreamBrokeContract extends DomainError {
  constructor(
    /** What it answered, for the client's message: "with an unexpected status", … */
    readonly what: string,
    cause: unknown,
  ) {
    super(`the upstream studio service answered ${what}`, cause)
  }
}

/**
 * A page position this store did not issue (it came back inside a cursor signed with the shared
 * secret, but by another kind of store): the client sent a cursor of another list.
 */
export class BadPosition extends DomainError {
  constructor() {
    super('a page position this store did not issue')
  }
}
