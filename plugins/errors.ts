import type { FastifyError, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import fp from 'fastify-plugin'
import secureJson from 'secure-json-parse'
import { redactKeys } from '../lib/api-keys.js'
import { descriptorExhaustion, isDescriptorExhaustion } from '../lib/descriptors.js'
import { ApiError, INTERNAL_MESSAGE, invalidRequest, notFound, unavailable } from '../lib/errors.js'

export const BODY_LIMIT = 64 * 1024

export interface ErrorsOptions {
  /** Run before the 404 is answered (the rate limit of unknown routes); may throw another error. */
  readonly onUnknownRoute?: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  /** A client closed its connection before its request was complete (counted apart, not an error of ours). */
  readonly onClientAbort?: (request: FastifyRequest) => void
}

/**
 * The one place errors become the envelope: every error thrown by a hook, a parser, a validator
 * or a handler, and every unknown route. Requests Node's HTTP parser rejects: lib/edge.ts.
 */
export default fp<ErrorsOptions>(
  async function errors(app, { onUnknownRoute, onClientAbort }) {
    // JSON only: any other content type is refused (415 inside Fastify, mapped to 400 below).
    app.removeAllContentTypeParsers()
    app.addContentTypeParser(
      'application/json',
      { parseAs: 'string', bodyLimit: BODY_LIMIT },
      (_request, body, done) => {
        done(null, parseJsonBody(body as string))
      },
    )

    app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
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
      const apiError = toApiError(error)
      if (apiError.code === 'internal') {
        request.log.error({ err: error }, 'unexpected error')
      } else if (apiError.code === 'unavailable' || apiError.code === 'bad_gateway') {
        // A dependency failed: operators need the cause the client is not shown.
        request.log.warn({ err: apiError.cause ?? apiError, code: apiError.code }, apiError.message)
      }
      return sendError(request, reply, apiError)
    })

    // An unknown route is answered from onRequest, before its body is read or parsed: 404 whatever
    // the method (QUERY without a Content-Type), body or content type, and the IP budget spent first.
    const unknownRoute = (request: FastifyRequest, reply: FastifyReply) =>
      sendError(request, reply, notFound(`no route for ${request.method} ${describePath(request.url)}`))
    app.addHook('onRequest', (request, reply, done) => {
      if (!request.is404) return done()
      if (onUnknownRoute === undefined) unknownRoute(request, reply)
      else onUnknownRoute(request, reply).then(() => unknownRoute(request, reply), done)
    })
    app.setNotFoundHandler(unknownRoute)
  },
  { name: 'errors' },
)

/**
 * Sends `error` as the envelope. `beside` adds members next to `error` (never inside it, whose
 * shape is the contract), for an endpoint with more to say, like /readyz's per-dependency detail.
 */
export function sendError(request: FastifyRequest, reply: FastifyReply, error: ApiError, beside?: object) {
  request.server.metrics.errorSent(error.code)
  reply.code(error.statusCode)
  // Also set by the request-id hook; repeated here for errors raised before hooks run (a bad URL).
  reply.header('x-request-id', request.id)
  reply.header('x-content-type-options', 'nosniff')
  // An error is about this request at this moment: no cache may keep it (a 404 would otherwise
  // be cacheable by default, RFC 9111), whether or not the auth hook ran before it.
  reply.header('cache-control', 'no-store')
  if (error.headers) reply.headers(error.headers)
  const scope = request.routeOptions.config?.scope
  if (scope !== undefined) reply.header('x-accepted-scopes', scope)
  const body = envelope(error, request.id)
  return reply.send(beside === undefined ? body : { ...body, ...beside })
}

export function envelope(error: ApiError, requestId: string) {
  return {
    error: {
      code: error.code,
      message: error.message,
      requestId,
      ...(error.requiredScope === undefined ? {} : { requiredScope: error.requiredScope }),
    },
  }
}

/** An empty body is no body; `__proto__` and `constructor.prototype` keys are refused. */
function parseJsonBody(text: string): unknown {
  if (text.trim() === '') return null
  try {
    return secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' })
  } catch (error) {
    if (error instanceof SyntaxError && /prototype/.test(error.message)) {
      throw invalidRequest('body must not contain a "__proto__" or "constructor.prototype" key')
    }
    throw invalidRequest('body is not valid JSON')
  }
}

/** Maps anything thrown to a code of the catalog. Only our own errors carry their message out. */
export function toApiError(error: FastifyError | ApiError | Error): ApiError {
  if (error instanceof ApiError) return error
  const fastifyError = error as FastifyError
  if (fastifyError.validation) {
    return invalidRequest(describeValidation(fastifyError.validation, fastifyError.validationContext))
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return invalidRequest(`body is larger than the ${BODY_LIMIT}-byte limit`)
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return invalidRequest('Content-Type must be application/json')
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return invalidRequest('Content-Length does not match the body')
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return invalidRequest('body is not valid JSON')
    case 'FST_ERR_BAD_URL':
      return invalidRequest('the request path is not a valid URL (bad percent-encoding)')
    case 'FST_ERR_MAX_PARAM_LENGTH':
      // An id too long to route cannot name a studio: the same answer as any other unknown id.
      return notFound('studio not found')
  }
  if (isDescriptorExhaustion(error)) {
    descriptorExhaustion.request++
    return unavailable('the gateway is out of resources; retry with backoff', 1, error)
  }
  const status = fastifyError.statusCode
  if (status === 404) return notFound('no such resource')
  // Anything else Fastify refused before our code ran was the client's input.
  if (typeof status === 'number' && status >= 400 && status < 500 && fastifyError.code?.startsWith('FST_')) {
    return invalidRequest('the request is malformed')
  }
  return new ApiError('internal', INTERNAL_MESSAGE, { cause: error })
}

const contexts: Record<string, string> = {
  body: 'body',
  querystring: 'querystring parameter',
  params: 'path parameter',
  headers: 'header',
}

/** A message that names the offending field, escaped and bounded, never the value sent. */
export function describeValidation(errors: FastifySchemaValidationError[], context: string | undefined): string {
  const first = errors[0]
  const part = context ?? 'request'
  if (!first) return `${part} is invalid`
  const params = (first.params ?? {}) as Record<string, unknown>
  const path = first.instancePath
    .split('/')
    .slice(1)
    .map((segment) => segment.replaceAll('~1', '/').replaceAll('~0', '~'))
    .join('.')
  const field = (name: string) => quoteField(path === '' ? name : `${path}.${name}`)
  switch (first.keyword) {
    case 'additionalProperties': {
      const name = String(params.additionalProperty)
      return part === 'body'
        ? `body has an unknown field ${field(name)}`
        : `unknown ${contexts[part] ?? part} ${field(name)}`
    }
    case 'required':
      return `${part} is missing the required field ${field(String(params.missingProperty))}`
  }
  if (path === '') {
    return part === 'body' ? 'body must be a JSON object, or empty' : `${part} ${first.message ?? 'is invalid'}`
  }
  return `${contexts[part] ?? part} ${quoteField(path)} ${first.message ?? 'is invalid'}`
}

/** Field names come from the client: JSON-quoted (so control characters are escaped), bounded, key-scrubbed. */
function quoteField(name: string): string {
  const bounded = name.length > 64 ? `${name.slice(0, 64)}…` : name
  return JSON.stringify(redactKeys(bounded))
}

function describePath(url: string): string {
  const path = url.split('?', 1)[0] ?? ''
  return JSON.stringify(redactKeys(path.length > 128 ? `${path.slice(0, 128)}…` : path)).slice(1, -1)
}
