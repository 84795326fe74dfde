import { isIP } from 'node:net'
import { getHeapStatistics } from 'node:v8'
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
  /**
   * Deadline of one store operation (waiting for a connection or a lock, retries and statements
   * included): past it, the store answers `503 unavailable` (docs/store-faults.md).
   */
  readonly storeTimeoutMs: number
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
  STORE_TIMEOUT: '1s',
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

  const storeTimeoutMs = parseDuration(withDefault('STORE_TIMEOUT'))
  if (storeTimeoutMs === undefined || storeTimeoutMs < 50 || storeTimeoutMs > 30_000) {
    problems.push('STORE_TIMEOUT must be a duration from 50ms to 30s, such as 1s or 500ms')
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
    storeTimeoutMs: storeTimeoutMs ?? 1000,
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
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return config
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
