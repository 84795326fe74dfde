import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Ajv, { type Options as AjvOptions } from 'ajv'
import addFormats from 'ajv-formats'
import Fastify, { type FastifyBaseLogger, LogController } from 'fastify'
import { type DestinationStream, type Logger, pino } from 'pino'
import type { Config } from './config.js'
import { type CursorCodec, createCursorCodec } from './lib/cursor.js'
import { createDependencyRegistry, type DependencyRegistry } from './lib/dependencies.js'
import { createEdge } from './lib/edge.js'
import { createIdempotency } from './lib/idempotency.js'
import { createKeyVerifier, type KeyVerifier } from './lib/key-verifier.js'
import { createMetrics, type Metrics } from './lib/metrics.js'
import accessLog from './plugins/access-log.js'
import auth from './plugins/auth.js'
import edgeChecks from './plugins/edge.js'
import errors, { BODY_LIMIT, sendError, toApiError } from './plugins/errors.js'
import idempotencyKeys from './plugins/idempotency.js'
import loadShedding from './plugins/load-shedding.js'
import metricsPlugin from './plugins/metrics.js'
import openapi from './plugins/openapi.js'
import rateLimits from './plugins/rate-limit.js'
import requestId, { genReqId } from './plugins/request-id.js'
import scopes from './plugins/scopes.js'
import writeGate from './plugins/write-gate.js'
import healthRoutes from './routes/health.js'
import metricsRoutes from './routes/metrics.js'
import v1Routes from './routes/v1/index.js'
import { sharedSchemas } from './schemas/index.js'
import type { IdempotencyStore, KeyStore, StudioService } from './stores/types.js'

declare module 'fastify' {
  interface FastifyInstance {
    readonly studios: StudioService
    readonly cursors: CursorCodec
    readonly keyVerifier: KeyVerifier
    readonly config: Config
    /** External dependencies and their checks (readiness, operators). */
    readonly dependencies: DependencyRegistry
    /** Prometheus metrics: named counters other plugins call, and the registry behind /metrics. */
    readonly metrics: Metrics
  }
}

export interface AppOptions {
  readonly config: Config
  readonly keys: KeyStore
  readonly studios: StudioService
  /** Where answers of writes sent with an Idempotency-Key are kept (the key store's database). */
  readonly idempotency: IdempotencyStore
  /** Signs pagination cursors; shared by every instance on one store. */
  readonly cursorSecret: Buffer
  /** Where log lines go; stdout when omitted. Ignored when `logger` is given. */
  readonly logStream?: DestinationStream
  /** The logger, when the caller already made one (to share it with the stores it opened). */
  readonly logger?: Logger
  /** Checks of the dependencies the caller opened (e.g. the key store's ping), by name. */
  readonly dependencyChecks?: Record<string, () => Promise<void>>
}

/** Secrets must never reach a log line, whatever object ends up logged. */
const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'secret',
  '*.secret',
]

/**
 * JSON lines, never pretty-printed. To stdout, asynchronously: a line is queued and written while
 * the request goes on, and lines queued during a write go out together in the next one (pino's
 * default is one blocking write(2) per line, a syscall per request at info). pino writes what is
 * still queued when the process exits.
 */
export function createLogger(level: Config['logLevel'], stream?: DestinationStream): Logger {
  const options = { level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }
  return pino(options, stream ?? pino.destination({ dest: 1, sync: false }))
}

// Ajv as the design wants it: unknown fields are rejected, not stripped. Query strings and path
// parameters are text and need coercion (`limit=20` → 20); bodies are JSON and must not be coerced
// (`{"title": 5}` is an error, not "5").
const ajvBase: AjvOptions = { removeAdditional: false, useDefaults: true, allErrors: false, strict: false }

function createValidators() {
  const forText = addFormats.default(new Ajv.default({ ...ajvBase, coerceTypes: 'array' }))
  const forBody = addFormats.default(new Ajv.default({ ...ajvBase, coerceTypes: false }))
  for (const schema of sharedSchemas) {
    forText.addSchema(schema)
    forBody.addSchema(schema)
  }
  return { forText, forBody }
}

/** Trusts the `hops` proxies nearest to the server (what Fastify does with a number). */
function trustHops(hops: number) {
  return (_address: string, hop: number) => hop < hops
}

/** Builds the whole gateway, not listening: the server, the tests and the OpenAPI generator share it. */
export async function buildApp(options: AppOptions) {
  const { config } = options
  const logger = options.logger ?? createLogger(config.logLevel, options.logStream)
  const keyVerifier = createKeyVerifier({
    keys: options.keys,
    ttlMs: config.keyCacheTtlMs,
    onTouchError: (error) => app.log.warn({ err: error }, 'could not record a key use'),
  })
  const metrics = createMetrics({ keyCache: keyVerifier.stats })
  // Connections, their time bounds and the answers below Fastify (docs/edge.md).
  const edge = createEdge({
    bounds: config.edge,
    log: logger as FastifyBaseLogger,
    registry: metrics.registry,
    onErrorSent: metrics.errorSent,
  })
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    genReqId,
    requestIdHeader: false,
    // Fastify's two lines per request are replaced by one access-log line (plugins/access-log.ts).
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    bodyLimit: BODY_LIMIT,
    serverFactory: edge.serverFactory,
    clientErrorHandler: edge.clientErrorHandler,
    // Refused before routing (a bad URL, an id too long to route): no key was checked, so the
    // answer shows the client IP's budget.
    frameworkErrors: (error, request, reply) => {
      app.rateLimiter.refused(request, reply, error).then(
        () => sendError(request, reply, toApiError(error)),
        (limited: Error) => sendError(request, reply, toApiError(limited)),
      )
    },
    // While closing, requests already on an open connection are served (with Connection: close),
    // not refused with Fastify's own 503 body: in-flight work finishes, new connections are refused.
    return503OnClosing: false,
    // A hop count is given to Fastify as a function: its types only take booleans and addresses.
    trustProxy: typeof config.trustProxy === 'number' ? trustHops(config.trustProxy) : config.trustProxy,
    // Long ids still reach the route (and its 404, with the route's headers), rather than failing
    // to match it: Node's parser refuses a request line and headers over 16 KiB before routing.
    routerOptions: { maxParamLength: 16 * 1024 },
  }).withTypeProvider<TypeBoxTypeProvider>()

  const validators = createValidators()
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? validators.forBody : validators.forText).compile(schema),
  )
  for (const schema of sharedSchemas) app.addSchema(schema)

  app.decorate('config', config)
  app.decorate('studios', options.studios)
  app.decorate('cursors', createCursorCodec(options.cursorSecret))
  app.decorate('keyVerifier', keyVerifier)
  app.decorate('metrics', metrics)
  const dependencies = createDependencyRegistry({ onResult: metrics.dependencyChecked })
  for (const [name, check] of Object.entries(options.dependencyChecks ?? {})) dependencies.register(name, check)
  app.decorate('dependencies', dependencies)
  app.decorateRequest('apiKey', null)

  await app.register(metricsPlugin)
  await app.register(requestId)
  await app.register(edgeChecks, { edge })
  await app.register(rateLimits, { config })
  metrics.readRateLimitFrom(app.rateLimitStats)
  await app.register(errors, { onUnknownRoute: app.rateLimiter.unknownRoute, onClientAbort: edge.clientAborted })
  await app.register(accessLog)
  // After the hooks every answer needs (the explorer's pages carry X-Request-Id too), before the
  // routes it describes.
  await app.register(openapi)

  // Operators' endpoints: outside /v1, so no key, no rate limit and no load shedding.
  await app.register(healthRoutes)
  await app.register(metricsRoutes)

  await app.register(
    async function v1(scope) {
      // The order of checks for a /v1 request: load → key → rate limit → scope → validation → write gate.
      await scope.register(loadShedding, { thresholds: config.shedding, beforeRefusing: app.rateLimiter.refused })
      await scope.register(auth, { verifier: keyVerifier, onRejected: app.rateLimiter.refused })
      scope.addHook('onRequest', app.rateLimiter.perKey)
      await scope.register(scopes)
      await scope.register(writeGate, { writesEnabled: config.writesEnabled })
      await scope.register(idempotencyKeys, {
        idempotency: createIdempotency({
          store: options.idempotency,
          // A write runs within the store's bounds (about 1 s) or UPSTREAM_TIMEOUT: a retry waits
          // that long (and 2 s more) for a concurrent first request, and a claim 5 s older than
          // that was abandoned (its process died, or could not release it during an outage).
          waitMs: config.upstreamTimeoutMs + 2000,
          leaseMs: config.upstreamTimeoutMs + 5000,
          onPruneError: (err) => app.log.warn({ err }, 'could not delete expired Idempotency-Key records'),
        }),
      })
      await scope.register(v1Routes)
    },
    { prefix: '/v1' },
  )

  return app
}

export type App = Awaited<ReturnType<typeof buildApp>>
