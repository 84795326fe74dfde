import type { RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { Idempotency } from '../lib/idempotency.js'
import type { KeyVerifier } from '../lib/key-verifier.js'
import { authenticate } from './authentication.js'
import { claimIdempotencyKey, storeIdempotentAnswer } from './idempotency.js'
import { shedLoad } from './load-shedding.js'
import { limitRate } from './rate-limit.js'
import { runSteps, type Step } from './run-steps.js'
import { requireScope } from './scope.js'
import { simulateErrors } from './simulate-error.js'
import { gateWrites } from './write-gate.js'

/**
 * The order of checks of every /v1 request: the spec's order, and the one place it is decided.
 *
 *    1. request id      every answer carries X-Request-Id         pipeline/root.ts (every route, with the edge's
 *                                                                 checks and unknown routes)
 *    2. load shedding   503 unavailable                           shedLoad
 *    3. key             401 invalid_key, 503 unavailable          authenticate
 *    4. rate limit      429 rate_limited                          limitRate
 *    4b. simulation     a test key's Simulate-Error / -Latency    simulateErrors (400 for a live key)
 *    5. scope           403 insufficient_scope + requiredScope    requireScope
 *    6. validation      400 invalid_request                       Fastify, from the route's schema
 *    7. write gate      503 write_disabled (go-live, go-offline)  gateWrites
 *    8. idempotency     a replay, or 400 / 503 (idempotent)      claimIdempotencyKey
 *    9. handler         200, 404 not_found, 502, 503              routes/v1/…
 *   10. envelope        every error, 500 internal if unexpected   plugins/error-handler.ts
 *
 * Steps 2–5 run in one onRequest hook, before the body is read; 7–8 in one preHandler hook, after
 * validation. A request refused before its key is known (2, 3) shows the client IP's failure
 * budget, and a failed authentication spends it (429 once it is spent).
 */
export interface PipelineOptions {
  readonly verifier: KeyVerifier
  readonly idempotency: Idempotency
  readonly writesEnabled: boolean
}

export default fp<PipelineOptions>(
  async function v1Pipeline(app, { verifier, idempotency, writesEnabled }) {
    app.decorateRequest('apiKey', null)
    app.decorateRequest('idempotencyClaim', null)
    const { rateLimiter } = app

    const beforeKey: Step[] = [shedLoad(app.load, app.metrics), authenticate(verifier), limitRate(rateLimiter)]
    // Refused before a key was known: the client IP's failure budget applies.
    const beforeRefusing = (request: Parameters<Step>[0], reply: Parameters<Step>[1], error: unknown) =>
      request.apiKey === null ? rateLimiter.refused(request, reply, error) : undefined
    const storeAnswer = storeIdempotentAnswer(idempotency)
    const claimKey = claimIdempotencyKey(idempotency)

    // Each /v1 route gets the steps that apply to it, bound to its own scope and kind.
    app.addHook('onRoute', (route: RouteOptions) => {
      if (!route.url.startsWith('/v1/')) return
      const scope = route.config?.scope
      // A simulated error is answered once the key and its budget are known, before anything else.
      const checked = [...beforeKey, simulateErrors(route, rateLimiter)]
      const beforeValidation = scope === undefined ? checked : [...checked, requireScope(scope)]
      const options = { beforeRefusing, scope: scope ?? null }
      route.onRequest = [...asArray(route.onRequest), runSteps(beforeValidation, options)]
      const gated = route.config?.write === true && !writesEnabled
      const idempotent = route.config?.idempotent === true
      const afterValidation = [...(gated ? [gateWrites] : []), ...(idempotent ? [claimKey] : [])]
      if (afterValidation.length === 0) return
      route.preHandler = [...asArray(route.preHandler), runSteps(afterValidation, options)]
      if (idempotent) route.onSend = [...asArray(route.onSend), storeAnswer]
    })
  },
  { name: 'v1-pipeline', dependencies: ['rate-limit', 'load-monitor', 'error-handler'] },
)

function asArray<T>(hooks: T | T[] | undefined): T[] {
  if (hooks === undefined) return []
  return Array.isArray(hooks) ? hooks : [hooks]
}
