import { isIP } from 'node:net'
import { getHeapStatistics } from 'node:v8'
import { connectionCeiling, DESCRIPTOR_RESERVE, REFUSAL_BAND } from './lib/descriptors.js'
import { parseDuration, parseDurationOrZero } from './lib/duration.js'

/**
 * Configuration from the environment, validated at start. A bad value stops the start with a
 * message naming the variable; values are never echoed (URLs can hold passwords).
 */
export interface Config {
  readonly port: number
  readonly host: string
  readonly dataDir: string
  readonly databaseUrl: string | undefined
  readonly redisUrl: string | undefined
  /** Prefix of every Redis key the gateway writes, so environments (or tests) can share one Redis. */
  readonly redisKeyPrefix: string
  readonly upstreamUrl: string | undefined
  /** Deadline of one call to the upstream studio service, retries included. */
  readonly upstreamTimeoutMs: number
  readonly rateLimit: {
    /** Requests per window per key, unless the key carries its own limit. */
    readonly max: number
    readonly windowMs: number
    /** Failed-authentication requests per window per client IP. */
    readonly unauthMax: number
  }
  /**
   * Which proxies' X-Forwarded-For to believe for the client IP (Fastify's `trustProxy`): false,
   * true (any), a hop count, or addresses / CIDR ranges. Per-IP rate limits count by that IP.
   */
  readonly trustProxy: boolean | number | string[]
  readonly writesEnabled: boolean
  readonly logLevel: LogLevel
  /** How long a key verification is cached; a revoked key keeps working at most this long. */
  readonly keyCacheTtlMs: number
  /** NODE_ENV=production: no demo seed. */
  readonly production: boolean
  /** Bearer token that /metrics requires; open when undefined. */
  readonly metricsToken: string | undefined
  /** How long in-flight requests get to finish after SIGTERM / SIGINT before the process exits anyway. */
  readonly shutdownTimeoutMs: number
  /** Load shedding (`@fastify/under-pressure`): past any threshold, 503 unavailable. 0 turns a check off. */
  readonly shedding: {
    /** How often the load is sampled; the event-loop delay is averaged over this window. */
    readonly sampleIntervalMs: number
    readonly maxEventLoopDelayMs: number
    readonly maxHeapUsedBytes: number
    readonly maxRssBytes: number
  }
  /** The bounds of the public edge (docs/edge.md): no client holds a connection, or a descriptor, past them. */
  readonly edge: EdgeBounds
}

export interface EdgeBounds {
  /** From a connection's first byte (or the first byte of its next request) to the end of the headers. */
  readonly headersTimeoutMs: number
  /** From the same start to the end of the body: the whole request. */
  readonly requestTimeoutMs: number
  /** How long a kept-alive connection may sit idle between requests. */
  readonly keepAliveTimeoutMs: number
  /** After an answer that closes the connection: how long what the client still sends is read and discarded… */
  readonly lingerTimeoutMs: number
  /** …and how much of it at most, before the socket is closed anyway. */
  readonly lingerMaxBytes: number
  /** Client connections served at once; the next REFUSAL_BAND are answered 503, any more are refused. */
  readonly maxConnections: number
}

export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof logLevels)[number]

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

const MIB = 1024 * 1024

/** A bearer token: 16–512 characters of the RFC 6750 token alphabet. */
const METRICS_TOKEN_SHAPE = /^[A-Za-z0-9._~+/=-]{16,512}$/

export const configDefaults = {
  PORT: '3000',
  HOST: '127.0.0.1',
  DATA_DIR: './data',
  RATE_LIMIT_MAX: '600',
  RATE_LIMIT_WINDOW: '1m',
  RATE_LIMIT_UNAUTH_MAX: '60',
  REDIS_KEY_PREFIX: 'studio-gateway:',
  TRUST_PROXY: 'false',
  WRITES_ENABLED: 'false',
  LOG_LEVEL: 'info',
  KEY_CACHE_TTL: '30s',
  SHUTDOWN_TIMEOUT: '10s',
  // A window of several seconds: sustained overload keeps the average delay high, while one stall
  // (a long GC, a paused VM) is averaged out instead of shedding the healthy second after it.
  SHED_SAMPLE_INTERVAL: '5s',
  SHED_MAX_EVENT_LOOP_DELAY: '500ms',
  // 90 % of V8's heap limit (which --max-old-space-size sets): past it the process is close to
  // dying of an out-of-memory error, and refusing work gives the garbage collector a chance.
  SHED_MAX_HEAP_USED_MB: String(Math.floor((getHeapStatistics().heap_size_limit * 0.9) / MIB)),
  SHED_MAX_RSS_MB: '0',
  UPSTREAM_TIMEOUT: '2s',
  // The edge (docs/edge.md). A 64 KiB body takes about 26 s at 20 kbit/s, a congested mobile link;
  // headers (16 KiB at most) far less. Node checks both bounds about every second.
  HEADERS_TIMEOUT: '10s',
  REQUEST_TIMEOUT: '30s',
  // Node's own default: long enough to reuse a connection between a client's calls, short enough
  // that idle connections do not pile up. Behind a load balancer, set it above the balancer's own.
  KEEP_ALIVE_TIMEOUT: '5s',
  // Enough for a client still uploading to read the answer and close, even on a busy machine
  // (nginx's lingering_timeout); past LINGER_MAX_KB, the gateway stops reading until then.
  LINGER_TIMEOUT: '5s',
  LINGER_MAX_KB: '1024',
  // The soft descriptor limit (ulimit -n) less a reserve for everything else the process opens.
  MAX_CONNECTIONS: String(connectionCeiling()),
} as const

type Env = Record<string, string | undefined>

export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = []
  // An empty variable counts as unset, so `REDIS_URL= npm start` means "no Redis".
  const read = (name: string): string | undefined => {
    const value = env[name]
    return value === undefined || value.trim() === '' ? undefined : value.trim()
  }
  const withDefault = (name: keyof typeof configDefaults) => read(name) ?? configDefaults[name]

  const integer = (name: keyof typeof configDefaults, min: number, max: number): number => {
    const text = withDefault(name)
    const value = /^\d+$/.test(text) ? Number(text) : Number.NaN
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max}`)
      return min
    }
    return value
  }

  const url = (name: string, protocols: string[], what: string): string | undefined => {
    const text = read(name)
    if (text === undefined) return undefined
    try {
      const parsed = new URL(text)
      if (protocols.includes(parsed.protocol) && parsed.hostname !== '') return text
    } catch {
      // reported below, without the value
    }
    problems.push(`${name} must be ${what}`)
    return undefined
  }

  const port = integer('PORT', 0, 65535)
  const host = withDefault('HOST')
  const dataDir = withDefault('DATA_DIR')

  const windowText = withDefault('RATE_LIMIT_WINDOW')
  const windowMs = parseDuration(windowText)
  if (windowMs === undefined) problems.push('RATE_LIMIT_WINDOW must be a duration such as 1m, 60s or 1 minute')

  const ttlMs = parseDurationOrZero(withDefault('KEY_CACHE_TTL'))
  if (ttlMs === undefined) problems.push('KEY_CACHE_TTL must be a duration such as 30s or 1m (0 turns the cache off)')

  const upstreamTimeoutMs = parseDuration(withDefault('UPSTREAM_TIMEOUT'))
  if (upstreamTimeoutMs === undefined || upstreamTimeoutMs > 60_000) {
    problems.push('UPSTREAM_TIMEOUT must be a duration from 1ms to 60s, such as 2s or 500ms')
  }

  const writesText = withDefault('WRITES_ENABLED').toLowerCase()
  const writesEnabled = ['true', '1', 'yes', 'on'].includes(writesText)
  if (!writesEnabled && !['false', '0', 'no', 'off'].includes(writesText)) {
    problems.push('WRITES_ENABLED must be true or false')
  }

  const redisKeyPrefix = withDefault('REDIS_KEY_PREFIX')
  if (!/^[\x21-\x7e]{1,64}$/.test(redisKeyPrefix)) {
    problems.push('REDIS_KEY_PREFIX must be 1 to 64 printable characters without spaces')
  }

  const trustProxy = parseTrustProxy(withDefault('TRUST_PROXY'))
  if (trustProxy === undefined) {
    problems.push(
      'TRUST_PROXY must be true, false, a number of proxy hops, or a comma-separated list of addresses or CIDR ranges',
    )
  }

  const shutdownTimeoutMs = parseDuration(withDefault('SHUTDOWN_TIMEOUT'))
  if (shutdownTimeoutMs === undefined) problems.push('SHUTDOWN_TIMEOUT must be a duration such as 10s or 1m')

  const sampleIntervalMs = parseDuration(withDefault('SHED_SAMPLE_INTERVAL'))
  if (sampleIntervalMs === undefined || sampleIntervalMs < 10 || sampleIntervalMs > 60_000) {
    problems.push('SHED_SAMPLE_INTERVAL must be a duration from 10ms to 1m, such as 5s')
  }

  const maxEventLoopDelayMs = parseDurationOrZero(withDefault('SHED_MAX_EVENT_LOOP_DELAY'))
  if (maxEventLoopDelayMs === undefined) {
    problems.push('SHED_MAX_EVENT_LOOP_DELAY must be a duration such as 500ms or 1s (0 turns the check off)')
  }

  const metricsToken = read('METRICS_TOKEN')
  if (metricsToken !== undefined && !METRICS_TOKEN_SHAPE.test(metricsToken)) {
    problems.push('METRICS_TOKEN must be 16 to 512 characters of A-Z a-z 0-9 . _ ~ + / = -')
  }

  const edge = loadEdgeBounds(withDefault, integer, problems)

  const logLevel = withDefault('LOG_LEVEL').toLowerCase() as LogLevel
  if (!logLevels.includes(logLevel)) problems.push(`LOG_LEVEL must be one of ${logLevels.join(', ')}`)

  const config: Config = {
    port,
    host,
    dataDir,
    databaseUrl: url('DATABASE_URL', ['postgres:', 'postgresql:'], 'a postgres:// URL'),
    redisUrl: url('REDIS_URL', ['redis:', 'rediss:'], 'a redis:// or rediss:// URL'),
    redisKeyPrefix,
    upstreamUrl: url('UPSTREAM_URL', ['http:', 'https:'], 'an http:// or https:// URL'),
    upstreamTimeoutMs: upstreamTimeoutMs ?? 2000,
    rateLimit: {
      max: integer('RATE_LIMIT_MAX', 1, 1_000_000_000),
      windowMs: windowMs ?? 60_000,
      unauthMax: integer('RATE_LIMIT_UNAUTH_MAX', 1, 1_000_000_000),
    },
    trustProxy: trustProxy ?? false,
    writesEnabled,
    logLevel,
    keyCacheTtlMs: ttlMs ?? 0,
    production: read('NODE_ENV') === 'production',
    metricsToken: metricsToken !== undefined && METRICS_TOKEN_SHAPE.test(metricsToken) ? metricsToken : undefined,
    shutdownTimeoutMs: shutdownTimeoutMs ?? 10_000,
    shedding: {
      sampleIntervalMs: sampleIntervalMs ?? 5000,
      maxEventLoopDelayMs: maxEventLoopDelayMs ?? 0,
      maxHeapUsedBytes: integer('SHED_MAX_HEAP_USED_MB', 0, 1_048_576) * MIB,
      maxRssBytes: integer('SHED_MAX_RSS_MB', 0, 1_048_576) * MIB,
    },
    edge,
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return config
}

type DefaultedName = keyof typeof configDefaults

/** The edge's bounds; each is required (none can be turned off: an unbounded one is what a hostile client uses). */
function loadEdgeBounds(
  withDefault: (name: DefaultedName) => string,
  integer: (name: DefaultedName, min: number, max: number) => number,
  problems: string[],
): EdgeBounds {
  const duration = (name: DefaultedName, range: string, minMs: number, maxMs: number, fallback: number) => {
    const ms = parseDuration(withDefault(name))
    if (ms === undefined || ms < minMs || ms > maxMs) {
      problems.push(`${name} must be a duration from ${range}, such as ${configDefaults[name]}`)
      return fallback
    }
    return ms
  }
  const headersTimeoutMs = duration('HEADERS_TIMEOUT', '10ms to 10m', 10, 600_000, 10_000)
  const requestTimeoutMs = duration('REQUEST_TIMEOUT', '10ms to 10m', 10, 600_000, 30_000)
  // Node refuses a header bound past the request's: the headers are part of the request.
  if (requestTimeoutMs < headersTimeoutMs) problems.push('REQUEST_TIMEOUT must not be shorter than HEADERS_TIMEOUT')
  // Each connection holds a descriptor: the cap must leave the reserve and the refusal band free.
  const ceiling = connectionCeiling()
  const maxText = withDefault('MAX_CONNECTIONS')
  const maxConnections = /^\d{1,9}$/.test(maxText) ? Number(maxText) : 0
  if (maxConnections < 1 || maxConnections > ceiling) {
    problems.push(
      ceiling < 1
        ? `MAX_CONNECTIONS: the descriptor limit (ulimit -n) is too low to serve connections; raise it above ${DESCRIPTOR_RESERVE + REFUSAL_BAND}`
        : `MAX_CONNECTIONS must be a whole number from 1 to ${ceiling} (the descriptor limit, ulimit -n, less ${DESCRIPTOR_RESERVE + REFUSAL_BAND})`,
    )
  }
  return {
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs: duration('KEEP_ALIVE_TIMEOUT', '10ms to 10m', 10, 600_000, 5000),
    lingerTimeoutMs: duration('LINGER_TIMEOUT', '10ms to 1m', 10, 60_000, 5000),
    lingerMaxBytes: integer('LINGER_MAX_KB', 0, 1_048_576) * 1024,
    maxConnections: Math.max(1, Math.min(maxConnections, ceiling)),
  }
}

/** `false`, `true`, a hop count, or a list of addresses / CIDR ranges; undefined when invalid. */
function parseTrustProxy(text: string): Config['trustProxy'] | undefined {
  const lower = text.toLowerCase()
  if (lower === 'false') return false
  if (lower === 'true') return true
  if (/^\d{1,2}$/.test(text)) return Number(text) === 0 ? false : Number(text)
  const entries = text.split(',').map((entry) => entry.trim())
  const valid = entries.every((entry) => {
    const [address = '', bits, ...rest] = entry.split('/')
    const version = isIP(address)
    if (version === 0 || rest.length > 0) return false
    return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (version === 4 ? 32 : 128))
  })
  return valid ? entries : undefined
}
