import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { redactKeys } from '../lib/api-keys.js'
import { descriptorExhaustion, isDescriptorExhaustion } from '../lib/descriptors.js'
import { type ApiError, ERROR_HEADERS, envelope, notFound, toApiError } from '../lib/errors.js'

export interface ErrorHandlerOptions {
  /** A client closed its connection before its request was complete (counted apart, not an error of ours). */
  readonly onClientAbort?: (request: FastifyRequest) => void
}

/**
 * The one place errors become the envelope: every error thrown by a hook, a parser, a validator
 * or a handler, and every unknown route (answered by `answerUnknownRoute`). The codes, statuses
 * and headers come from the catalog (lib/errors.ts); requests Node's HTTP parser rejects are
 * answered below Fastify (lib/edge.ts).
 */
export default fp<ErrorHandlerOptions>(
  async function errorHandler(app, { onClientAbort }) {
    app.setErrorHandler((error, request, reply) => {
      if (request.raw.destroyed && !request.raw.complete) {
        // The connection closed mid-request (its body reader failed with "aborted"): nobody to
        // answer, and not a fault of the gateway (below warn, never `internal`).
        onClientAbort?.(request)
        request.log.info(
          { route: request.routeOptions.url ?? null },
          'connection closed before the request was complete',
        )
        return
      }
      if (isDescriptorExhaustion(error)) descriptorExhaustion.request++
      const apiError = toApiError(error)
      if (apiError.code === 'internal') {
        request.log.error({ err: error }, 'unexpected error')
      } else if (apiError.code === 'unavailable' || apiError.code === 'bad_gateway') {
        // A dependency failed: operators need the cause the client is not shown.
        request.log.warn({ err: apiError.cause ?? apiError, code: apiError.code }, apiError.message)
      }
      return sendError(request, reply, apiError)
    })

    // Unknown routes are answered from onRequest (pipeline/root.ts); this is what Fastify would call.
    app.setNotFoundHandler(answerUnknownRoute)
  },
  { name: 'error-handler' },
)

/**
 * Sends `error` as the envelope, with the headers of the catalog and, on a scoped route,
 * X-Accepted-Scopes. `scope` is the route's scope when the caller knows it (the /v1 pipeline binds
 * it per route), else it is read from the route. `beside` adds members next to `error` (never
 * inside it, whose shape is the contract), for an endpoint with more to say, like /readyz's
 * per-dependency detail.
 */
export function sendError(
  request: FastifyRequest,
  reply: FastifyReply,
  error: ApiError,
  options: { readonly scope?: string | null; readonly beside?: object; readonly simulated?: boolean } = {},
) {
  // A simulated error is a test key's request, not a fault: it stays out of errors_total (and its alerts).
  if (options.simulated === true) request.server.metrics.simulatedErrorSent(error.code)
  else request.server.metrics.errorSent(error.code)
  reply.code(error.statusCode)
  reply.header('x-request-id', request.id)
  for (const [name, value] of ERROR_HEADERS) reply.header(name, value)
  if (error.headers) for (const name in error.headers) reply.header(name, error.headers[name])
  const scope = options.scope === undefined ? request.routeOptions.config?.scope : options.scope
  if (scope) reply.header('x-accepted-scopes', scope)
  const body = envelope(error, request.id)
  return reply.send(options.beside === undefined ? body : { ...body, ...options.beside })
}

/** 404 not_found for a request no route matches, whatever its method, body or content type. */
export function answerUnknownRoute(request: FastifyRequest, reply: FastifyReply) {
  return sendError(request, reply, notFound(`no route for ${request.method} ${describePath(request.url)}`))
}

function describePath(url: string): string {
  const path = url.split('?', 1)[0] ?? ''
  return JSON.stringify(redactKeys(path.length > 128 ? `${path.slice(0, 128)}…` : path)).slice(1, -1)
}
