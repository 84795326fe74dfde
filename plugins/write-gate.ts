import fp from 'fastify-plugin'
import { writeDisabled } from '../lib/errors.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Marks a route of the write surface, gated by WRITES_ENABLED. */
    write?: boolean
  }
}

/**
 * 503 write_disabled on write routes while writes are off. A preHandler hook: it runs after
 * auth, scope and validation have passed, as the order of checks requires.
 */
export default fp<{ writesEnabled: boolean }>(
  async function writeGate(app, { writesEnabled }) {
    if (writesEnabled) return
    app.addHook('preHandler', (request, _reply, done) => {
      done(request.routeOptions.config.write === true ? writeDisabled() : undefined)
    })
  },
  { name: 'write-gate' },
)
