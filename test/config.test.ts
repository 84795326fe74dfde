import t from 'tap'
import { ConfigError, loadConfig } from '../config.js'
import { connectionCeiling, DESCRIPTOR_RESERVE, REFUSAL_BAND, readDescriptorLimit } from '../lib/descriptors.js'

t.test('defaults', async (t) => {
  const config = loadConfig({})
  t.match(config, {
    port: 3000,
    host: '127.0.0.1',
    dataDir: './data',
    databaseUrl: undefined,
    redisUrl: undefined,
    upstreamUrl: undefined,
    upstreamTimeoutMs: 2000,
    storeTimeoutMs: 1000,
    rateLimit: { max: 600, windowMs: 60_000, unauthMax: 60 },
    redisKeyPrefix: 'studio-gateway:',
    trustProxy: false,
    writesEnabled: false,
    logLevel: 'info',
    keyCacheTtlMs: 30_000,
    production: false,
    metricsToken: undefined,
    shutdownTimeoutMs: 10_000,
    shedding: { sampleIntervalMs: 5000, maxEventLoopDelayMs: 500, maxRssBytes: 0 },
    edge: {
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 30_000,
      keepAliveTimeoutMs: 5000,
      lingerTimeoutMs: 5000,
      lingerMaxBytes: 1024 * 1024,
      maxConnections: connectionCeiling(),
    },
  })
})

t.test('values are read and converted', async (t) => {
  const config = loadConfig({
    PORT: '8080',
    RATE_LIMIT_WINDOW: '1 minute',
    RATE_LIMIT_MAX: '10',
    KEY_CACHE_TTL: '0',
    WRITES_ENABLED: 'TRUE',
    LOG_LEVEL: 'warn',
    NODE_ENV: 'production',
    REDIS_URL: 'redis://127.0.0.1:6379',
    DATABASE_URL: '',
    UPSTREAM_URL: 'http://studios.internal:8080/api',
    UPSTREAM_TIMEOUT: '750ms',
    STORE_TIMEOUT: '500ms',
  })
  t.match(config, {
    port: 8080,
    rateLimit: { max: 10, windowMs: 60_000 },
    keyCacheTtlMs: 0,
    writesEnabled: true,
    logLevel: 'warn',
    production: true,
    redisUrl: 'redis://127.0.0.1:6379',
    databaseUrl: undefined,
    upstreamUrl: 'http://studios.internal:8080/api',
    upstreamTimeoutMs: 750,
    storeTimeoutMs: 500,
  })
  t.equal(loadConfig({ RATE_LIMIT_WINDOW: '60s' }).rateLimit.windowMs, 60_000)
  t.match(
    loadConfig({
      METRICS_TOKEN: 'a-long-enough-metrics-token',
      SHUTDOWN_TIMEOUT: '30s',
      SHED_MAX_EVENT_LOOP_DELAY: '1s',
      SHED_SAMPLE_INTERVAL: '2s',
      SHED_MAX_HEAP_USED_MB: '512',
      SHED_MAX_RSS_MB: '1024',
    }),
    {
      metricsToken: 'a-long-enough-metrics-token',
      shutdownTimeoutMs: 30_000,
      shedding: {
        sampleIntervalMs: 2000,
        maxEventLoopDelayMs: 1000,
        maxHeapUsedBytes: 512 * 1024 * 1024,
        maxRssBytes: 1024 * 1024 * 1024,
      },
    },
  )
})

t.test('TRUST_PROXY: off, any proxy, a hop count, or addresses and ranges', async (t) => {
  const trust = (value: string) => loadConfig({ TRUST_PROXY: value }).trustProxy
  t.equal(trust('false'), false)
  t.equal(trust('0'), false)
  t.equal(trust('TRUE'), true)
  t.equal(trust('2'), 2)
  t.same(trust('10.0.0.1'), ['10.0.0.1'])
  t.same(trust('10.0.0.0/8, 192.168.1.1,::1, fd00::/8'), ['10.0.0.0/8', '192.168.1.1', '::1', 'fd00::/8'])
  for (const bad of ['yes please', '10.0.0.0/33', '::1/129', '10.0.0.1/8/8', 'proxy.internal', '10.0.0.1,']) {
    t.throws(() => loadConfig({ TRUST_PROXY: bad }), /TRUST_PROXY/, bad)
  }
})

t.test('REDIS_KEY_PREFIX namespaces the Redis keys', async (t) => {
  t.equal(loadConfig({ REDIS_KEY_PREFIX: 'staging:gw:' }).redisKeyPrefix, 'staging:gw:')
  t.throws(() => loadConfig({ REDIS_KEY_PREFIX: 'has space' }), /REDIS_KEY_PREFIX/)
  t.throws(() => loadConfig({ REDIS_KEY_PREFIX: 'x'.repeat(65) }), /REDIS_KEY_PREFIX/)
})

t.test('a bad value stops the start with a message naming the variable', async (t) => {
  const bad: Record<string, string> = {
    PORT: '70000',
    RATE_LIMIT_MAX: 'lots',
    RATE_LIMIT_WINDOW: 'soon',
    RATE_LIMIT_UNAUTH_MAX: '0',
    WRITES_ENABLED: 'maybe',
    LOG_LEVEL: 'loud',
    KEY_CACHE_TTL: '30',
    REDIS_URL: 'http://not-redis',
    UPSTREAM_URL: 'ftp://upstream',
    TRUST_PROXY: 'sometimes',
    REDIS_KEY_PREFIX: 'two words',
    METRICS_TOKEN: 'short',
    SHUTDOWN_TIMEOUT: '10',
    SHED_MAX_EVENT_LOOP_DELAY: 'fast',
    SHED_SAMPLE_INTERVAL: '5ms',
    SHED_MAX_HEAP_USED_MB: '-1',
    SHED_MAX_RSS_MB: '1.5GB',
    UPSTREAM_TIMEOUT: '5m',
    STORE_TIMEOUT: '10ms',
    HEADERS_TIMEOUT: '0',
    REQUEST_TIMEOUT: 'forever',
    KEEP_ALIVE_TIMEOUT: '5',
    LINGER_TIMEOUT: '2m',
    LINGER_MAX_KB: '1.5',
    MAX_CONNECTIONS: '999999999',
  }
  for (const [name, value] of Object.entries(bad)) {
    t.throws(() => loadConfig({ [name]: value }), ConfigError, `${name}=${value}`)
    try {
      loadConfig({ [name]: value })
    } catch (error) {
      t.match((error as Error).message, new RegExp(`\\b${name}\\b`))
    }
  }
  const all = (() => {
    try {
      loadConfig(bad)
    } catch (error) {
      return error as ConfigError
    }
  })()
  t.equal(all?.problems.length, Object.keys(bad).length, 'every problem is reported at once')
})

t.test('a URL with a password is never echoed in the message', async (t) => {
  try {
    loadConfig({ DATABASE_URL: 'mysql://admin:hunter2@db/prod' })
    t.fail('should throw')
  } catch (error) {
    t.match((error as Error).message, /DATABASE_URL/)
    t.notMatch((error as Error).message, /hunter2/)
  }
})

t.test('a bad METRICS_TOKEN is never echoed in the message', async (t) => {
  try {
    loadConfig({ METRICS_TOKEN: 'has spaces in the secret token' })
    t.fail('should throw')
  } catch (error) {
    t.match((error as Error).message, /METRICS_TOKEN/)
    t.notMatch((error as Error).message, /secret token/)
  }
})

t.test('the edge bounds: read, converted, and each one required', async (t) => {
  const config = loadConfig({
    HEADERS_TIMEOUT: '5s',
    REQUEST_TIMEOUT: '20s',
    KEEP_ALIVE_TIMEOUT: '10s',
    LINGER_TIMEOUT: '500ms',
    LINGER_MAX_KB: '256',
    MAX_CONNECTIONS: '100',
  })
  t.same(config.edge, {
    headersTimeoutMs: 5000,
    requestTimeoutMs: 20_000,
    keepAliveTimeoutMs: 10_000,
    lingerTimeoutMs: 500,
    lingerMaxBytes: 256 * 1024,
    maxConnections: 100,
  })
  t.equal(loadConfig({ LINGER_MAX_KB: '0' }).edge.lingerMaxBytes, 0, 'lingering may read nothing (time bound only)')
  for (const [name, value] of [
    ['HEADERS_TIMEOUT', '0s'],
    ['REQUEST_TIMEOUT', '11m'],
    ['KEEP_ALIVE_TIMEOUT', '0'],
    ['LINGER_TIMEOUT', '5ms'],
    ['MAX_CONNECTIONS', '0'],
    ['MAX_CONNECTIONS', 'auto'],
  ] as const) {
    t.throws(() => loadConfig({ [name]: value }), new RegExp(`\\b${name}\\b`), `${name}=${value}`)
  }
  t.throws(
    () => loadConfig({ HEADERS_TIMEOUT: '20s', REQUEST_TIMEOUT: '10s' }),
    /REQUEST_TIMEOUT must not be shorter than HEADERS_TIMEOUT/,
  )
})

t.test('MAX_CONNECTIONS defaults to the descriptor limit less a reserve, and may not exceed it', async (t) => {
  const limit = readDescriptorLimit()
  if (limit !== undefined) {
    t.equal(loadConfig({}).edge.maxConnections, limit - DESCRIPTOR_RESERVE - REFUSAL_BAND)
  }
  const ceiling = connectionCeiling()
  t.equal(loadConfig({ MAX_CONNECTIONS: String(ceiling) }).edge.maxConnections, ceiling, 'the ceiling itself')
  try {
    loadConfig({ MAX_CONNECTIONS: String(ceiling + 1) })
    t.fail('should throw')
  } catch (error) {
    t.match((error as Error).message, /MAX_CONNECTIONS must be a whole number from 1 to \d+ \(the descriptor limit/)
  }
})

t.test('the descriptor limit is the soft "Max open files" of /proc/self/limits', async (t) => {
  const limits = [
    'Limit                     Soft Limit           Hard Limit           Units',
    'Max processes             63704                63704                processes',
    'Max open files            1024                 524288               files',
  ].join('\n')
  t.equal(readDescriptorLimit(limits), 1024)
  t.equal(readDescriptorLimit(limits.replace('1024  ', 'unlimited')), Number.MAX_SAFE_INTEGER)
  t.equal(readDescriptorLimit('nothing useful'), undefined)
  t.equal(connectionCeiling(1024), 1024 - DESCRIPTOR_RESERVE - REFUSAL_BAND)
})
