/**
 * What can go wrong below the routes, said in the stores' own terms. Stores never decide an HTTP
 * answer: the error catalog (lib/errors.ts) maps each of these to a code of the contract.
 */

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

/** The database cannot serve now (down, refusing connections, locked, full, too slow). Transient. */
export class StoreUnavailable extends DomainError {
  constructor(
    message: string,
    cause?: unknown,
    /** How long a client should wait before trying again. */
    readonly retryAfterSeconds = 1,
  ) {
    super(message, cause)
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
