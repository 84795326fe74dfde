import { isIP } from 'node:net'
import { getHeapStatistics } from 'node:v8'
import { type SchemaOptions, type Static, Type } from '@sinclair/typebox'
import { Ajv, type FuncKeywordDefinition, type KeywordDefinition } from 'ajv'
import envSchema from 'env-schema'
import { connectionCeiling, DESCRIPTOR_RESERVE, REFUSAL_BAND } from './lib/descriptors.js'
import { parseDuration, parseDurationOrZero } from './lib/duration.js'

/**
 * The configuration: environment variables, read through one schema (TypeBox, validated by
 * env-schema). Each variable declares its default and, in `x-must`, what a valid value is: a bad
 * value stops the start with a message naming the variable and that rule, never echoing the value
 * (URLs and tokens hold secrets). Durations, switches, URLs and proxy lists are converted by small
 * keywords (`x-duration`, …) as they are validated. An empty variable counts as unset.
 */

const MIB = 1024 * 1024

export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof logLevels)[number]

/** A variable's schema: its rule for messages (`x-must`) beside TypeBox's own options. */
type Rule = SchemaOptions & { 'x-must': string }

const text = (options: Rule & { default?: string }) => Type.String(options)
const whole = (minimum: number, maximum: number, options: SchemaOptions & { default?: number }) =>
  Type.Integer({ minimum, maximum, 'x-must': `a whole number from ${minimum} to ${maximum}`, ...options })
/** A duration (`30s`, `1m`, `250ms`), as milliseconds; `zero` allows `0` (a check turned off). */
const duration = (bounds: { min?: number; max?: number; zero?: boolean }, options: Rule & { default: string }) =>
  Type.Unsafe<number>(Type.String({ ...options, 'x-duration': bounds }))
const url = (protocols: string[], options: Rule) =>
  Type.Optional(Type.Unsafe<string>(Type.String({ ...options, 'x-url': protocols })))
const flag = (options: Rule & { default: string }) => Type.Unsafe<boolean>(Type.String({ ...options, 'x-flag': true }))

const heapLimitMb = Math.floor((getHeapStatistics().heap_size_limit * 0.9) / MIB)

// Each connection holds a descriptor: the cap must leave the reserve and the refusal band free.
const ceiling = connectionCeiling()
const connectionRule =
  ceiling < 1
    ? `below the descriptor limit, which is too low to serve connections: raise ulimit -n above ${DESCRIPTOR_RESERVE + REFUSAL_BAND}`
    : `a whole number from 1 to ${ceiling} (the descriptor limit, ulimit -n, less ${DESCRIPTOR_RESERVE + REFUSAL_BAND})`

export const EnvSchema = Type.Object({
  PORT: whole(0, 65535, { default: 3000, description: 'Port to listen on (`0`: any free port).' }),
  HOST: text({
    default: '127.0.0.1',
    minLength: 1,
    'x-must': 'an address to listen on',
    description: 'Address to listen on.',
  }),
  DATA_DIR: text({
    default: './data',
    minLength: 1,
    'x-must': 'a directory path',
    description: 'Directory of the embedded SQLite store, created on first start.',
  }),
  DATABASE_URL: url(['postgres:', 'postgresql:'], {
    'x-must': 'a postgres:// URL',
    description: '`postgres://…`: PostgreSQL instead of the embedded store.',
  }),
  REDIS_URL: url(['redis:', 'rediss:'], {
    'x-must': 'a redis:// or rediss:// URL',
    description: '`redis://…` or `rediss://…`: shared rate-limit counters for several instances.',
  }),
  REDIS_KEY_PREFIX: text({
    default: 'studio-gateway:',
    pattern: '^[\\x21-\\x7e]{1,64}$',
    'x-must': '1 to 64 printable characters without spaces',
    description: 'Prefix of every Redis key the gateway writes, so environments can share a Redis.',
  }),
  UPSTREAM_URL: url(['http:', 'https:'], {
    'x-must': 'an http:// or https:// URL',
    description: '`http(s)://…`: serve studios from an upstream studio service.',
  }),
  UPSTREAM_TIMEOUT: duration(
    { max: 60_000 },
    {
      default: '2s',
      'x-must': 'a duration from 1ms to 60s, such as 2s or 500ms',
      description: 'Deadline of one call to the upstream, retries included; past it: `503 unavailable`.',
    },
  ),
  STORE_TIMEOUT: duration(
    { min: 50, max: 30_000 },
    {
      default: '1s',
      'x-must': 'a duration from 50ms to 30s, such as 1s or 500ms',
      description:
        'Deadline of one store operation (waiting for a connection or a lock, retries and statements included); past it: `503 unavailable` (docs/store-faults.md).',
    },
  ),
  RATE_LIMIT_MAX: whole(1, 1_000_000_000, {
    default: 600,
    description: 'Requests per window per key, unless the key has its own limit.',
  }),
  RATE_LIMIT_WINDOW: duration(
    {},
    {
      default: '1m',
      'x-must': 'a duration such as 1m, 60s or 1 minute',
      description: 'The window of `RATE_LIMIT_MAX`: `60s`, `1m`, `1 minute`, `250ms`… (a unit is required).',
    },
  ),
  RATE_LIMIT_UNAUTH_MAX: whole(1, 1_000_000_000, {
    default: 60,
    description: 'Failures with no key to charge (failed authentication, unknown routes) per window per client IP.',
  }),
  TRUST_PROXY: Type.Unsafe<boolean | number | string[]>(
    Type.String({
      default: 'false',
      'x-trust-proxy': true,
      'x-must': 'true, false, a number of proxy hops, or a comma-separated list of addresses or CIDR ranges',
      description:
        'Behind a proxy: `true` (trust any), a number of hops, or comma-separated addresses / CIDR ranges of the proxies whose `X-Forwarded-For` gives the client IP.',
    }),
  ),
  WRITES_ENABLED: flag({
    default: 'false',
    'x-must': 'true or false',
    description: '`true` opens go-live / go-offline.',
  }),
  LOG_LEVEL: Type.Unsafe<LogLevel>(
    Type.String({
      default: 'info',
      'x-lowercase': logLevels,
      'x-must': `one of ${logLevels.join(', ')}`,
      description: `${logLevels.map((level) => `\`${level}\``).join(', ')}.`,
    }),
  ),
  KEY_CACHE_TTL: duration(
    { zero: true },
    {
      default: '30s',
      'x-must': 'a duration such as 30s or 1m (0 turns the cache off)',
      description: 'How long a key verification is cached; bounds how long a revoked key keeps working.',
    },
  ),
  NODE_ENV: Type.Optional(Type.String({ 'x-must': 'a name', description: '`production`: no demo seed.' })),
  METRICS_TOKEN: Type.Optional(
    Type.String({
      pattern: '^[A-Za-z0-9._~+/=-]{16,512}$',
      'x-must': '16 to 512 characters of A-Z a-z 0-9 . _ ~ + / = -',
      description: 'When set, `/metrics` needs `Authorization: Bearer <token>`.',
    }),
  ),
  SHUTDOWN_TIMEOUT: duration(
    {},
    {
      default: '10s',
      'x-must': 'a duration such as 10s or 1m',
      description: 'How long in-flight requests get after SIGTERM / SIGINT before the process exits anyway (with 1).',
    },
  ),
  // A window of several seconds: sustained overload keeps the average delay high, while one stall
  // (a long GC, a paused VM) is averaged out instead of shedding the healthy second after it.
  // At least 100 ms: the delay histogram ticks every 10 ms, and a shorter window holds too few ticks.
  SHED_SAMPLE_INTERVAL: duration(
    { min: 100, max: 60_000 },
    {
      default: '5s',
      'x-must': 'a duration from 100ms to 1m, such as 5s',
      description: 'How often the load is sampled; the event-loop delay is averaged over this window.',
    },
  ),
  SHED_MAX_EVENT_LOOP_DELAY: duration(
    { zero: true },
    {
      default: '500ms',
      'x-must': 'a duration such as 500ms or 1s (0 turns the check off)',
      description: 'Shed load while the event loop lags more than this on average (`0`: off).',
    },
  ),
  // 90 % of V8's heap limit (which --max-old-space-size sets): past it the process is close to
  // dying of an out-of-memory error, and refusing work gives the garbage collector a chance.
  SHED_MAX_HEAP_USED_MB: whole(0, 1_048_576, {
    default: heapLimitMb,
    description: "Shed load while the JS heap holds more MiB than this (`0`: off); 90 % of V8's heap limit by default.",
  }),
  SHED_MAX_RSS_MB: whole(0, 1_048_576, {
    default: 0,
    description: "Shed load while the process's resident memory is above this many MiB (`0`: off).",
  }),
  // The edge (docs/edge.md). A 64 KiB body takes about 26 s at 20 kbit/s, a congested mobile link;
  // headers (16 KiB at most) far less. Node checks both bounds about every second.
  HEADERS_TIMEOUT: duration(
    { min: 10, max: 600_000 },
    {
      default: '10s',
      'x-must': 'a duration from 10ms to 10m, such as 10s',
      description:
        "From a connection's first byte (or its next request's) to the end of the headers; past it: `400`, closed.",
    },
  ),
  REQUEST_TIMEOUT: duration(
    { min: 10, max: 600_000 },
    {
      default: '30s',
      'x-must': 'a duration from 10ms to 10m, such as 30s, and not shorter than HEADERS_TIMEOUT',
      description: 'From the same start to the end of the body: the whole request; past it: `400`, closed.',
    },
  ),
  // Node's own default: long enough to reuse a connection between a client's calls, short enough
  // that idle connections do not pile up. Behind a load balancer, set it above the balancer's own.
  KEEP_ALIVE_TIMEOUT: duration(
    { min: 10, max: 600_000 },
    {
      default: '5s',
      'x-must': 'a duration from 10ms to 10m, such as 5s',
      description: 'How long a kept-alive connection may sit idle between requests.',
    },
  ),
  // Enough for a client still uploading to read the answer and close, even on a busy machine
  // (nginx's lingering_timeout); past LINGER_MAX_KB, the gateway stops reading until then.
  LINGER_TIMEOUT: duration(
    { min: 10, max: 60_000 },
    {
      default: '5s',
      'x-must': 'a duration from 10ms to 1m, such as 5s',
      description:
        'After an answer sent before its request was read (401, 413-sized bodies…): how long what the client still sends is read and discarded before the socket closes.',
    },
  ),
  LINGER_MAX_KB: whole(0, 1_048_576, {
    default: 1024,
    description: 'How much of it at most (KiB); past it the gateway stops reading until LINGER_TIMEOUT.',
  }),
  MAX_CONNECTIONS: Type.Integer({
    minimum: 1,
    maximum: Math.max(1, ceiling),
    default: Math.max(1, ceiling),
    'x-must': connectionRule,
    description: `Client connections served at once; the next ${REFUSAL_BAND} get \`503 unavailable\`, any more are refused. Default: the descriptor limit (ulimit -n) less ${DESCRIPTOR_RESERVE + REFUSAL_BAND}.`,
  }),
})

type Env = Static<typeof EnvSchema>

/**
 * The keywords that turn text into values while validating (env-schema's `separator` is one of
 * the same kind). Each refuses what it cannot convert; the message comes from the variable's `x-must`.
 */
type Validate = NonNullable<ReturnType<NonNullable<FuncKeywordDefinition['compile']>>>

// biome-ignore lint/suspicious/noExplicitAny: each keyword's schema has its own shape, given by its use in EnvSchema
const modifying = (keyword: string, convert: (schema: any, value: string) => unknown): KeywordDefinition => ({
  keyword,
  type: 'string',
  modifying: true,
  errors: true,
  compile(schema: unknown) {
    const validate: Validate = (value: unknown, context) => {
      const converted = convert(schema, value as string)
      if (converted === undefined || context === undefined) return false
      ;(context.parentData as Record<string, unknown>)[context.parentDataProperty] = converted
      return true
    }
    return validate
  },
})

const keywords: KeywordDefinition[] = [
  { keyword: 'x-must', schemaType: 'string' },
  modifying('x-duration', (bounds: { min?: number; max?: number; zero?: boolean }, value) => {
    const ms = bounds.zero ? parseDurationOrZero(value) : parseDuration(value)
    if (ms === undefined || ms < (bounds.min ?? 0) || ms > (bounds.max ?? Number.POSITIVE_INFINITY)) return undefined
    return ms
  }),
  modifying('x-url', (protocols: string[], value) => {
    try {
      const parsed = new URL(value)
      return protocols.includes(parsed.protocol) && parsed.hostname !== '' ? value : undefined
    } catch {
      return undefined
    }
  }),
  modifying('x-flag', (_, value) => {
    const lower = value.toLowerCase()
    if (['true', '1', 'yes', 'on'].includes(lower)) return true
    if (['false', '0', 'no', 'off'].includes(lower)) return false
    return undefined
  }),
  modifying('x-lowercase', (allowed: string[], value) => {
    const lower = value.toLowerCase()
    return allowed.includes(lower) ? lower : undefined
  }),
  modifying('x-trust-proxy', (_, value) => parseTrustProxy(value)),
]

/** env-schema's own Ajv settings, once, with the keywords above: the schema is compiled once per process. */
let validator: Ajv | undefined
function ajvForEnv(): Ajv {
  if (validator === undefined) {
    validator = new Ajv({
      allErrors: true,
      removeAdditional: true,
      useDefaults: true,
      coerceTypes: true,
      allowUnionTypes: true,
      keywords: [envSchema.keywords.separator, ...keywords],
    })
  }
  return validator
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

/** What a variable must be, from its schema: the message of a bad value. */
function problemsOf(errors: readonly { instancePath: string }[]): string[] {
  const names = new Set(errors.map((error) => error.instancePath.split('/')[1] ?? '').filter((name) => name !== ''))
  const properties = EnvSchema.properties as Record<string, { 'x-must'?: string }>
  return [...names].map((name) => `${name} must be ${properties[name]?.['x-must'] ?? 'valid'}`)
}

function readEnv(env: Record<string, string | undefined>): Env {
  const present: Record<string, string> = {}
  for (const name of Object.keys(EnvSchema.properties)) {
    const value = env[name]?.trim()
    // An empty variable counts as unset, so `REDIS_URL= npm start` means "no Redis".
    if (value !== undefined && value !== '') present[name] = value
  }
  try {
    return envSchema<Env>({
      schema: EnvSchema,
      data: present,
      env: false,
      ajv: ajvForEnv(),
    })
  } catch (error) {
    const errors = (error as { errors?: { instancePath: string }[] }).errors
    // Never the library's text: it could hold a value.
    throw new ConfigError(errors ? problemsOf(errors) : ['the environment could not be read'])
  }
}

/** The configuration of a gateway, from the environment. Throws ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env) {
  const e = readEnv(env)
  // Node refuses a header bound past the request's: the headers are part of the request.
  if (e.REQUEST_TIMEOUT < e.HEADERS_TIMEOUT) {
    throw new ConfigError(['REQUEST_TIMEOUT must not be shorter than HEADERS_TIMEOUT'])
  }
  if (ceiling < 1) throw new ConfigError([`MAX_CONNECTIONS must be ${connectionRule}`])
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir: e.DATA_DIR,
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    /** Prefix of every Redis key the gateway writes, so environments (or tests) can share one Redis. */
    redisKeyPrefix: e.REDIS_KEY_PREFIX,
    upstreamUrl: e.UPSTREAM_URL,
    /** Deadline of one call to the upstream studio service, retries included. */
    upstreamTimeoutMs: e.UPSTREAM_TIMEOUT,
    /** Deadline of one store operation (a connection or a lock waited for, retries and statements included). */
    storeTimeoutMs: e.STORE_TIMEOUT,
    rateLimit: {
      /** Requests per window per key, unless the key carries its own limit. */
      max: e.RATE_LIMIT_MAX,
      windowMs: e.RATE_LIMIT_WINDOW,
      /** Failed-authentication requests per window per client IP. */
      unauthMax: e.RATE_LIMIT_UNAUTH_MAX,
    },
    /**
     * Which proxies' X-Forwarded-For to believe for the client IP (Fastify's `trustProxy`): false,
     * true (any), a hop count, or addresses / CIDR ranges. Per-IP rate limits count by that IP.
     */
    trustProxy: e.TRUST_PROXY,
    writesEnabled: e.WRITES_ENABLED,
    logLevel: e.LOG_LEVEL,
    /** How long a key verification is cached; a revoked key keeps working at most this long. */
    keyCacheTtlMs: e.KEY_CACHE_TTL,
    /** NODE_ENV=production: no demo seed. */
    production: e.NODE_ENV === 'production',
    /** Bearer token that /metrics requires; open when undefined. */
    metricsToken: e.METRICS_TOKEN,
    /** How long in-flight requests get to finish after SIGTERM / SIGINT before the process exits anyway. */
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT,
    /** Load shedding: past any threshold, 503 unavailable. 0 turns a check off. */
    shedding: {
      /** How often the load is sampled; the event-loop delay is averaged over this window. */
      sampleIntervalMs: e.SHED_SAMPLE_INTERVAL,
      maxEventLoopDelayMs: e.SHED_MAX_EVENT_LOOP_DELAY,
      maxHeapUsedBytes: e.SHED_MAX_HEAP_USED_MB * MIB,
      maxRssBytes: e.SHED_MAX_RSS_MB * MIB,
    },
    /** The bounds of the public edge (docs/edge.md): no client holds a connection, or a descriptor, past them. */
    edge: {
      headersTimeoutMs: e.HEADERS_TIMEOUT,
      requestTimeoutMs: e.REQUEST_TIMEOUT,
      keepAliveTimeoutMs: e.KEEP_ALIVE_TIMEOUT,
      lingerTimeoutMs: e.LINGER_TIMEOUT,
      lingerMaxBytes: e.LINGER_MAX_KB * 1024,
      maxConnections: e.MAX_CONNECTIONS,
    },
  } as const
}

export type Config = ReturnType<typeof loadConfig>
export type EdgeBounds = Config['edge']

/** `false`, `true`, a hop count, or a list of addresses / CIDR ranges; undefined when invalid. */
function parseTrustProxy(value: string): boolean | number | string[] | undefined {
  const lower = value.toLowerCase()
  if (lower === 'false') return false
  if (lower === 'true') return true
  if (/^\d{1,2}$/.test(value)) return Number(value) === 0 ? false : Number(value)
  const entries = value.split(',').map((entry) => entry.trim())
  const valid = entries.every((entry) => {
    const [address = '', bits, ...rest] = entry.split('/')
    const version = isIP(address)
    if (version === 0 || rest.length > 0) return false
    return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (version === 4 ? 32 : 128))
  })
  return valid ? entries : undefined
}
