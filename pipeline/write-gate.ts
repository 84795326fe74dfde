import { writeDisabled } from '../lib/errors.js'
import { callerOf } from './authentication.js'
import type { Step } from './run-steps.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Marks a route of the write surface (go-live / go-offline), gated by WRITES_ENABLED. */
    write?: boolean
  }
}

/**
 * Step 7 of the order of checks, on write routes while WRITES_ENABLED is off: 503 write_disabled,
 * once auth, scope and validation have passed (a request that would otherwise have been accepted).
 * The sandbox is never gated: a test key writes to its account's sandbox studios, so consumers
 * can build against the write surface before it opens (docs/test-mode.md).
 */
export const gateWrites: Step = function gateWrites(request) {
  return callerOf(request).mode === 'test' ? undefined : writeDisabled()
}
