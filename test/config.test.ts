import t from 'tap'
import { ConfigError, loadConfig } from '../config.js'

t.test('defaults', async (t) => {
  const config = loadConfig({})
  t.match(config, {
    port: 3000,
    host: '127.0.0.1',
    dataDir: './data',
    databaseUrl: undefined,
    redisUrl: undefined,
    upstreamUrl: undefined,
    rateLimit: { max: 600, windowMs: 60_000, unauthMax: 60 },
    writesEnabled: false,
    logLevel: 'info',
    keyCacheTtlMs: 30_000,
    production: false,
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
  })
  t.equal(loadConfig({ RATE_LIMIT_WINDOW: '60s' }).rateLimit.windowMs, 60_000)
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
