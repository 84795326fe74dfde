import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { DependencyStatus } from '../lib/dependencies.js'
import { unavailable } from '../lib/errors.js'
import { sendError } from '../plugins/error-handler.js'
import { errorResponses } from '../schemas/error-envelope.js'
import { type DependencyStates, Health, NotReady, Readiness } from '../schemas/ops.js'

/** Each dependency check gets this long: a probe answers within about a second, whatever hangs. */
const READINESS_CHECK_TIMEOUT_MS = 1000

/** Seconds a caller of a not-ready gateway is asked to wait (about one probe period). */
const NOT_READY_RETRY_AFTER_SECONDS = 5

const notReady = (message: string) => unavailable(message, NOT_READY_RETRY_AFTER_SECONDS)

/**
 * Route options shared by the operators' endpoints. Outside /v1, they need no key and are neither
 * rate limited nor shed (those apply in the /v1 scope): probes must not turn an overload into an
 * outage, and metrics are how the overload is seen. Quiet in the access log: a probe every few
 * seconds would drown it.
 */
export const opsRouteOptions = { logLevel: 'warn' } as const

/**
 * `/healthz`: liveness. The process runs and its event loop answers; no dependency I/O, so a
 * database outage never gets the process restarted.
 * `/readyz`: readiness. Every registered dependency (the store, and Redis or the upstream when
 * configured) answers its check within READINESS_CHECK_TIMEOUT_MS; otherwise 503 unavailable
 * naming the ones that are down.
 */
const health: FastifyPluginAsyncTypebox = async (app) => {
  // Concurrent probes share one round of checks: an unauthenticated endpoint must not let a
  // flood of probes multiply the load on the database.
  let pending: Promise<DependencyStatus[]> | undefined
  const checkAll = () => {
    pending ??= app.dependencies.checkAll(READINESS_CHECK_TIMEOUT_MS).finally(() => {
      pending = undefined
    })
    return pending
  }

  // A dependency going down or coming back is logged once, not on every probe.
  const lastOk = new Map<string, boolean>()
  const logTransitions = (statuses: DependencyStatus[]) => {
    for (const status of statuses) {
      const before = lastOk.get(status.name)
      lastOk.set(status.name, status.ok)
      if (!status.ok && before !== false) {
        app.log.warn({ dependency: status.name, reason: status.error }, 'dependency is down: not ready')
      } else if (status.ok && before === false) {
        app.log.info({ dependency: status.name }, 'dependency is back')
      }
    }
  }

  app.get(
    '/healthz',
    {
      ...opsRouteOptions,
      schema: {
        operationId: 'getHealth',
        summary: 'Liveness probe',
        description: 'The process is alive. Touches no dependency. No key needed.',
        // Operators' endpoints, documented in the README (Operations), not in the public API description.
        hide: true,
        response: { 200: Health, ...errorResponses(['internal']) },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', 'no-store')
      return { status: 'ok' as const }
    },
  )

  app.get(
    '/readyz',
    {
      ...opsRouteOptions,
      schema: {
        operationId: 'getReadiness',
        summary: 'Readiness probe',
        description:
          'Checks every dependency (store, Redis, upstream), each within 1 s. 503 `unavailable` when one is ' +
          'down: the message names it and `dependencies` details each. No key needed.',
        // Operators' endpoints, documented in the README (Operations), not in the public API description.
        hide: true,
        response: {
          200: Readiness,
          503: NotReady,
          ...errorResponses(['internal']),
        },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store')
      const statuses = await checkAll()
      logTransitions(statuses)
      const dependencies: DependencyStates = {}
      for (const { name, ok, latencyMs } of statuses) dependencies[name] = { status: ok ? 'up' : 'down', latencyMs }
      const down = statuses.filter((status) => !status.ok).map((status) => status.name)
      if (down.length > 0) {
        const message = `not ready: ${down.join(', ')} ${down.length === 1 ? 'is' : 'are'} down`
        return sendError(request, reply, notReady(message), { beside: { dependencies } })
      }
      return { status: 'ready' as const, dependencies }
    },
  )
}

export default health
