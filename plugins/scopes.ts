import fp from 'fastify-plugin'
import type { Scope } from '../lib/api-keys.js'
import { insufficientScope } from '../lib/errors.js'
import { callerOf } from './auth.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a route needs; routes without one accept any valid key. */
    scope?: Scope
  }
}

/**
 * 403 insufficient_scope when the key lacks the route's scope. An onRequest hook, so it runs
 * before the body is read: an under-scoped key with a bad body learns about the scope first.
 */
export default fp(
  async function scopes(app) {
    app.addHook('onRequest', (request, _reply, done) => {
      const required = request.routeOptions.config.scope
      if (required !== undefined && !callerOf(request).scopes.includes(required)) {
        done(insufficientScope(required))
        return
      }
      done()
    })
  },
  { name: 'scopes', dependencies: ['auth'] },
)
