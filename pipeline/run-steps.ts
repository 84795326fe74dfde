import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import { ApiError } from '../lib/errors.js'
import { sendError } from '../plugins/error-handler.js'

/**
 * One check of the order of checks. It lets the request through by returning (at once, or with
 * a promise when it has to wait for a store), refuses it by throwing an error of the catalog, or
 * answers it itself (an idempotent replay) with `reply.send`.
 */
export type Step = (request: FastifyRequest, reply: FastifyReply) => void | Promise<void>

/**
 * Refusals answered from the hook that raised them rather than through Fastify's error path: they
 * are the client's doing, expected, and need no log line. Anything else (503 unavailable, 502, a
 * bug) goes to the error handler, which logs it.
 */
const EXPECTED = new Set(['invalid_request', 'invalid_key', 'insufficient_scope', 'rate_limited', 'write_disabled'])

export interface RunOptions {
  /**
   * Told of a refusal before it is answered, and may replace it (the client IP's failure budget
   * turns a 401 into a 429 once it is spent).
   */
  readonly beforeRefusing?: (request: FastifyRequest, reply: FastifyReply, error: unknown) => undefined | Promise<void>
}

/**
 * The steps as one callback-style hook: they run in order, synchronously as long as each answers
 * at once (a cached key, an in-memory counter), so the common request costs no promise.
 */
export function runSteps(steps: readonly Step[], options: RunOptions = {}): onRequestHookHandler {
  const { beforeRefusing } = options

  return function checks(request, reply, done) {
    let index = 0

    const refuse = (error: unknown) => {
      const pending = beforeRefusing?.(request, reply, error)
      if (pending === undefined) answer(error)
      else pending.then(() => answer(error), answer)
    }

    const answer = (error: unknown) => {
      if (error instanceof ApiError && EXPECTED.has(error.code)) sendError(request, reply, error)
      else done(error as Error)
    }

    const next = (): void => {
      try {
        while (index < steps.length) {
          const step = steps[index++] as Step
          const pending = step(request, reply)
          if (reply.sent) return
          if (pending !== undefined) {
            pending.then(() => (reply.sent ? undefined : next()), refuse)
            return
          }
        }
      } catch (error) {
        refuse(error)
        return
      }
      done()
    }

    next()
  }
}
