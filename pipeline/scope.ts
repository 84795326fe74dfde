import type { Scope } from '../lib/api-keys.js'
import { insufficientScope } from '../lib/errors.js'
import { callerOf } from './authentication.js'
import type { Step } from './run-steps.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a route needs; routes without one accept any valid key. */
    scope?: Scope
    /**
     * The route hands out or manages scopes (key management): its 403 may also name a scope of
     * the request's (or of the key it acts on) that the calling key lacks.
     */
    grantsScopes?: boolean
  }
}

/**
 * Step 5 of the order of checks: 403 insufficient_scope, naming the scope, when the key lacks the
 * route's. Before validation, so an under-scoped key sending a bad body learns about the scope first.
 */
export function requireScope(scope: Scope): Step {
  const refusal = insufficientScope(scope)
  return function requireScope(request) {
    if (!callerOf(request).scopes.includes(scope)) return refusal
  }
}
