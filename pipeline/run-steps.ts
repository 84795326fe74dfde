import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import { ApiError } from '../lib/errors.js'
import { sendError } from '../plugins/error-handler.js'

/**
 * One check of the order of checks. It lets the request through by returning nothing (at once, or
 * a promise when it has to wait for a store), refuses it by returning an error of the catalog (or
 * throwing one, or rejecting with one), or answers it itself (an idempotent replay) with
 * `reply.send`. Returning the refusal is the cheap way: a throw costs a stack walk, and refusals
 * (a bad key, a spent budget) are the requests a hostile client sends by the thousand.
 */
export type Step = (request: FastifyRequest, reply: FastifyReply) => void | ApiError | Promise<void>

type Done = (error?: Error) => void

/**
 * Refusals answered from the hook that raised them rather than through Fastify's error path: they
 * are the client's doing, expected, and need no log line. Anything else (503 unavailable, 502, a
 * bug) goes to the error handler, which logs it.
 */
const EXPECTED = new Set(['invalid_request', 'invalid_key', 'insufficient_scope', 'rate_limited', 'write_disabled'])
/** A test key's simulated errors (Simulate-Error), whatever their code. */
const simulatedErrors = new WeakSet<ApiError>()

/**
 * Marks an error a step refuses with as simulated: answered at once whatever its code, with no
 * log line, counted apart from real errors. Never a shared error object: its every use would count.
 */
export function asSimulated(error: ApiError): ApiError {
  simulatedErrors.add(error)
  return error
}

export interface RunOptions {
  /** The route's scope (X-Accepted-Scopes on its errors), bound once rather than read per refusal. */
  readonly scope?: string | null
  /**
   * Told of a refusal before it is answered, and may replace it (the client IP's failure budget
   * turns a 401 into a 429 once it is spent).
   */
  readonly beforeRefusing?: (request: FastifyRequest, reply: FastifyReply, error: unknown) => undefined | Promise<void>
}

/**
 * The steps as one callback-style hook: they run in order, synchronously as long as each answers
 * at once (a cached key, an in-memory counter), so the common request costs no promise and no
 * closure; a step that waits resumes the rest when its promise settles.
 */
export function runSteps(steps: readonly Step[], options: RunOptions = {}): onRequestHookHandler {
  const { beforeRefusing } = options
  const sendOptions = { scope: options.scope ?? null }
  const simulatedOptions = { ...sendOptions, simulated: true }

  function answer(request: FastifyRequest, reply: FastifyReply, done: Done, error: unknown) {
    if (error instanceof ApiError && simulatedErrors.has(error)) sendError(request, reply, error, simulatedOptions)
    else if (error instanceof ApiError && EXPECTED.has(error.code)) sendError(request, reply, error, sendOptions)
    else done(error as Error)
  }

  function refuse(request: FastifyRequest, reply: FastifyReply, done: Done, error: unknown) {
    const pending = beforeRefusing?.(request, reply, error)
    if (pending === undefined) answer(request, reply, done, error)
    else {
      pending.then(
        () => answer(request, reply, done, error),
        (replacement: unknown) => answer(request, reply, done, replacement),
      )
    }
  }

  function run(request: FastifyRequest, reply: FastifyReply, done: Done, from: number): void {
    for (let index = from; index < steps.length; index++) {
      let pending: void | ApiError | Promise<void>
      try {
        pending = (steps[index] as Step)(request, reply)
      } catch (error) {
        refuse(request, reply, done, error)
        return
      }
      if (reply.sent) return
      if (pending !== undefined) {
        if (pending instanceof ApiError) {
          refuse(request, reply, done, pending)
          return
        }
        pending.then(
          () => {
            if (!reply.sent) run(request, reply, done, index + 1)
          },
          (error: unknown) => refuse(request, reply, done, error),
        )
        return
      }
    }
    done()
  }

  return function checks(request, reply, done) {
    run(request, reply, done, 0)
  }
}
