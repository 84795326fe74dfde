import type { Socket } from 'node:net'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest, preValidationHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { redactKeys } from '../lib/api-keys.js'
import {
  type ApiError,
  ERROR_HEADERS,
  type ErrorCode,
  envelope,
  invalidRequest,
  notFound,
  rawErrorAnswer,
  toApiError,
} from '../lib/errors.js'
import { newRequestId } from '../lib/ids.js'

export interface ErrorHandlerOptions {
  /** A hook run before the 404 is answered (the rate limit of unknown routes). */
  readonly onUnknownRoute?: preValidationHookHandler
}

/**
 * The one place errors become the envelope: every error thrown by a hook, a parser, a validator
 * or a handler, and every unknown route. The codes, statuses and headers come from the catalog
 * (lib/errors.ts); requests Node's HTTP parser rejects are answered by `createClientErrorHandler`.
 */
export default fp<ErrorHandlerOptions>(
  async function errorHandler(app, { onUnknownRoute }) {
    app.setErrorHandler((error, request, reply) => {
      const apiError = toApiError(error)
      if (apiError.code === 'internal') {
        request.log.error({ err: error }, 'unexpected error')
      } else if (apiError.code === 'unavailable' || apiError.code === 'bad_gateway') {
        // A dependency failed: operators need the cause the client is not shown.
        request.log.warn({ err: apiError.cause ?? apiError, code: apiError.code }, apiError.message)
      }
      return sendError(request, reply, apiError)
    })

    app.setNotFoundHandler({ preValidation: onUnknownRoute ? [onUnknownRoute] : [] }, (request, reply) =>
      sendError(request, reply, notFound(`no route for ${request.method} ${describePath(request.url)}`)),
    )
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
  options: { readonly scope?: string | null; readonly beside?: object } = {},
) {
  request.server.metrics.errorSent(error.code)
  reply.code(error.statusCode)
  reply.header('x-request-id', request.id)
  for (const [name, value] of ERROR_HEADERS) reply.header(name, value)
  if (error.headers) for (const name in error.headers) reply.header(name, error.headers[name])
  const scope = options.scope === undefined ? request.routeOptions.config?.scope : options.scope
  if (scope) reply.header('x-accepted-scopes', scope)
  const body = envelope(error, request.id)
  return reply.send(options.beside === undefined ? body : { ...body, ...options.beside })
}

function describePath(url: string): string {
  const path = url.split('?', 1)[0] ?? ''
  return JSON.stringify(redactKeys(path.length > 128 ? `${path.slice(0, 128)}…` : path)).slice(1, -1)
}

/**
 * Fastify's `clientErrorHandler`: requests Node's HTTP parser rejects (bad bytes in a header,
 * headers over the size limit, a broken request line, a request that never finishes) never reach
 * a route. They still get the envelope, with a generated request id.
 */
export function createClientErrorHandler(log: FastifyBaseLogger, onError?: (code: ErrorCode) => void) {
  return function clientErrorHandler(error: NodeJS.ErrnoException, socket: Socket) {
    if (error.code === 'ECONNRESET' || socket.destroyed) return
    const requestId = newRequestId()
    const message =
      error.code === 'HPE_HEADER_OVERFLOW'
        ? 'request headers are larger than the server accepts'
        : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? 'the request was not received in time'
          : 'the HTTP request is malformed'
    log.debug({ requestId, code: error.code }, 'client error')
    if (!socket.writable) {
      socket.destroy()
      return
    }
    onError?.('invalid_request')
    socket.end(rawErrorAnswer(invalidRequest(message), requestId))
  }
}
