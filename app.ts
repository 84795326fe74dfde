import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyBaseLogger, LogController } from 'fastify'
import { type DestinationStream, pino } from 'pino'
import type { Config } from './config.js'
import { type CursorCodec, createCursorCodec } from './lib/cursor.js'
import { createDependencyRegistry, type DependencyRegistry } from './lib/dependencies.js'
import { createEdge } from './lib/edge.js'
import { BODY_LIMIT, toApiError } from './lib/errors.js'
import { createIdempotency } from './lib/idempotency.js'
import { openInvalidationChannel } from './lib/key-invalidation/index.js'
import { createKeyManagement, type KeyManagement } from './lib/key-management.js'
import { createKeyVerifier, type KeyVerifier } from './lib/key-verifier.js'
import { stdoutDestination } from './lib/log-destination.js'
import { createMetrics, type Metrics } from './lib/metrics.js'
import { lazyChildLogger } from './lib/request-logger.js'
import { provisionSandbox } from './lib/sandbox.js'
import { compileValidator, schemaController } from './lib/schema-compilers.js'
import { createAnswerSealer } from './lib/sealed-answers.js'
import v1Pipeline from './pipeline/index.js'
import { loadMonitor } from './pipeline/load-shedding.js'
import { genReqId } from './pipeline/request-id.js'
import rootSteps from './pipeline/root.js'
import bodyParser from './plugins/body-parser.js'
import errorHandler, { sendError } from './plugins/error-handler.js'
import observe from './plugins/observe.js'
import openapi from './plugins/openapi.js'
import rateLimits from './plugins/rate-limit.js'
import healthRoutes from './routes/health.js'
import metricsRoutes from './routes/metrics.js'
import v1Routes from './routes/v1/index.js'
import { sharedSchemas } from './schemas/index.js'
import { openBackends } from './stores/index.js'
import type { KeyStore, SqlStore, StudioService } from './stores/types.js'

declare module 'fastify' {
  interface FastifyInstance {
    readonly config: Config
    /** The gateway's own store: keys, the cursor secret, Idempotency-Key records (and studios without an upstream). */
    readonly store: SqlStore
    /** Where studios come from: the store, or the upstream studio service (UPSTREAM_URL). */
    readonly studios: StudioService
    readonly cursors: CursorCodec
    /** Verifies the keys of /v1 requests, with its cache. */
    readonly keyVerifier: KeyVerifier
    /** Self-serve key management (routes/v1/keys.ts). */
    readonly keyManagement: KeyManagement
    /** External dependencies and their checks (readiness, operators). */
    readonly dependencies: DependencyRegistry
    /** Prometheus metrics: named counters other plugins call, and the registry behind /metrics. */
    readonly metrics: Metrics
  }
}

/** What a caller may replace when building the app (tests: a failing store, a slow studio service). */
export interface AppOverrides {
  /** Where log lines go; stdout when omitted. */
  readonly logStream?: DestinationStream
  readonly keys?: (store: SqlStore) => KeyStore
  readonly studios?: (store: SqlStore, studios: StudioService) => StudioService
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
 * JSON lines, never pretty-printed. To stdout, the lines of one turn of the event loop in one
 * write (pino's default is a write(2) per line, a syscall per request at info; see
 * lib/log-destination.ts). What is still pending is written when the process exits.
 */
function createLogger(level: Config['logLevel'], stream?: DestinationStream) {
  const options = { level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }
  const destination = stream ?? stdoutDestination()
  return { logger: pino(options, destination), destination }
}

/** Trusts the `hops` proxies nearest to the server (what Fastify does with a number). */
function trustHops(hops: number) {
  return (_address: string, hop: number) => hop < hops
}

/**
 * Builds the whole gateway from its configuration, not listening: the server, the tests and the
 * OpenAPI generator all call this. It opens the store the configuration names (and the upstream
 * studio service), which the app closes when it closes.
 */
export async function buildApp(config: Config, overrides: AppOverrides = {}) {
  const log = createLogger(config.logLevel, overrides.logStream)
  const { logger } = log
  const backends = await openBackends(config, {
    onConnectionError: (err) => logger.warn({ err }, 'a pooled database connection failed; it will be replaced'),
  })
  try {
    return await assemble(config, log, backends, overrides)
  } catch (error) {
    await backends.close()
    throw error
  }
}

async function assemble(
  config: Config,
  { logger, destination }: ReturnType<typeof createLogger>,
  backends: Awaited<ReturnType<typeof openBackends>>,
  overrides: AppOverrides,
) {
  const { store } = backends
  const keys = overrides.keys?.(store) ?? store.keys
  const studios = overrides.studios?.(store, backends.studios) ?? backends.studios
  const keyVerifier = createKeyVerifier({
    keys,
    ttlMs: config.keyCacheTtlMs,
    onTouchError: (error) => logger.warn({ err: error }, 'could not record a key use'),
  })
  // Every instance forgets a key that changed within a second (lib/key-invalidation/).
  const invalidations = await openInvalidationChannel(config, {
    onKey: (keyId) => keyVerifier.forget(keyId),
    onResync: () => keyVerifier.forgetAll(),
    onError: (err, message) => logger.warn({ err }, message),
  })
  const keyManagement = createKeyManagement({
    keys,
    defaultRateLimits: [{ max: config.rateLimit.max, windowMs: config.rateLimit.windowMs }],
    onChanged: (keyId) => {
      keyVerifier.forget(keyId)
      invalidations
        .publish(keyId)
        .catch((err: unknown) =>
          logger.warn({ err, keyId }, 'could not announce a key change; other instances see it within KEY_CACHE_TTL'),
        )
    },
    onTestKeyMinted: (accountId) => provisionSandbox(store.studios, accountId),
    log: logger as FastifyBaseLogger,
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
    // A request's logger becomes a pino child only if the request logs something (lib/request-logger.ts).
    childLoggerFactory: lazyChildLogger,
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
    // Validators and serializers compiled once per process (lib/schema-compilers.ts).
    schemaController,
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.addHook('onClose', async () => {
    keyManagement.close()
    await invalidations.close()
    await backends.close()
  })

  app.setValidatorCompiler(compileValidator)
  for (const schema of sharedSchemas) app.addSchema(schema)

  app.decorate('config', config)
  app.decorate('store', store)
  app.decorate('studios', studios)
  app.decorate('cursors', createCursorCodec(backends.cursorSecret))
  app.decorate('keyVerifier', keyVerifier)
  app.decorate('keyManagement', keyManagement)
  app.decorate('metrics', metrics)
  const dependencies = createDependencyRegistry({ onResult: metrics.dependencyChecked })
  for (const [name, check] of Object.entries(backends.checks)) dependencies.register(name, check)
  app.decorate('dependencies', dependencies)

  // Infrastructure: what every answer needs, then the limiter and the load monitor.
  await app.register(observe, { destination })
  await app.register(errorHandler, { onClientAbort: edge.clientAborted })
  // Request id, the edge's checks and unknown routes, for every request (pipeline/root.ts).
  await app.register(rootSteps, {
    edge,
    maxConnections: config.edge.maxConnections,
    onUnknownRoute: (request, reply) => app.rateLimiter.unknownRoute(request, reply),
  })
  await app.register(bodyParser)
  await app.register(rateLimits, { config })
  metrics.readRateLimitFrom(app.rateLimitStats)
  await app.register(loadMonitor, { thresholds: config.shedding })
  // After the hooks every answer needs (the explorer's pages carry X-Request-Id too), before the
  // routes it describes.
  await app.register(openapi)

  // The order of checks of /v1 routes (pipeline/index.ts), then the routes.
  await app.register(v1Pipeline, {
    verifier: keyVerifier,
    writesEnabled: config.writesEnabled,
    idempotency: createIdempotency({
      store: store.idempotency,
      sealer: createAnswerSealer(backends.idempotencySecret),
      // A write runs within the store's bounds (about 1 s) or UPSTREAM_TIMEOUT: a retry waits
      // that long (and 2 s more) for a concurrent first request, and a claim 5 s older than
      // that was abandoned (its process died, or could not release it during an outage).
      waitMs: config.upstreamTimeoutMs + 2000,
      leaseMs: config.upstreamTimeoutMs + 5000,
      onPruneError: (err) => logger.warn({ err }, 'could not delete expired Idempotency-Key records'),
    }),
  })
  await app.register(v1Routes, { prefix: '/v1' })

  // Operators' endpoints: outside /v1, so no key, no rate limit and no load shedding.
  await app.register(healthRoutes)
  await app.register(metricsRoutes)

  return app
}

export type App = Awaited<ReturnType<typeof buildApp>>
