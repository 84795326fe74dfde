import { generateKeySecret, scopes } from '../lib/api-keys.js'
import { mintKey } from '../lib/mint-key.js'
import { openSqliteStore } from '../stores/sqlite.js'

/** What the store holds before the gateway starts (seeded through the store, never over HTTP). */
export interface Seed {
  readonly accountId: string
  readonly studioId: string
  /** Holds every scope. */
  readonly fullKey: string
  /** Holds stream:read only: refused on the studio routes. */
  readonly streamOnlyKey: string
  /** Well-formed, checksum valid, but never stored. */
  readonly unknownKey: string
  /** The full key with its last character changed: the right shape, a wrong checksum. */
  readonly typoKey: string
  readonly studioCount: number
}

export const SEED_STUDIOS = 120

export async function seedStore(dataDir: string): Promise<Seed> {
  const store = await openSqliteStore(dataDir)
  try {
    const accountId = 'acct_bench'
    let studioId = ''
    for (let i = 0; i < SEED_STUDIOS; i++) {
      const studio = await store.studios.createStudio({ accountId, name: `Bench studio ${String(i).padStart(3, '0')}` })
      if (i === 0) studioId = studio.id
    }
    const full = mintKey({ accountId, scopes })
    const streamOnly = mintKey({ accountId, scopes: ['stream:read'] })
    await store.keys.insert(full.record)
    await store.keys.insert(streamOnly.record)
    return {
      accountId,
      studioId,
      fullKey: full.secret,
      streamOnlyKey: streamOnly.secret,
      unknownKey: generateKeySecret(),
      typoKey: full.secret.slice(0, -1) + (full.secret.endsWith('0') ? '1' : '0'),
      studioCount: SEED_STUDIOS,
    }
  } finally {
    await store.close()
  }
}

export interface Scenario {
  readonly name: string
  readonly title: string
  /** The gateway's LOG_LEVEL in this scenario. */
  readonly logLevel: 'warn' | 'info'
  /** Runs only when REDIS_URL is set, and passes it to the gateway. */
  readonly redis: boolean
  /** The route the bare server declares for the same path. */
  readonly bareRoute: string
  readonly expectedStatus: number
  request(seed: Seed): { readonly path: string; readonly headers: Record<string, string> }
}

const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` })

const getStudio =
  (key: (seed: Seed) => string) =>
  (seed: Seed): { path: string; headers: Record<string, string> } => ({
    path: `/v1/studios/${seed.studioId}`,
    headers: bearer(key(seed)),
  })

export const scenarios: readonly Scenario[] = [
  {
    name: 'get-warn',
    title: 'GET /v1/studios/{id}, valid key, LOG_LEVEL=warn',
    logLevel: 'warn',
    redis: false,
    bareRoute: '/v1/studios/:studioId',
    expectedStatus: 200,
    request: getStudio((seed) => seed.fullKey),
  },
  {
    name: 'get-info',
    title: 'GET /v1/studios/{id}, valid key, LOG_LEVEL=info (one access-log line per request)',
    logLevel: 'info',
    redis: false,
    bareRoute: '/v1/studios/:studioId',
    expectedStatus: 200,
    request: getStudio((seed) => seed.fullKey),
  },
  {
    name: '401-unknown',
    title: 'GET /v1/studios/{id}, well-formed but unknown key → 401, LOG_LEVEL=warn',
    logLevel: 'warn',
    redis: false,
    bareRoute: '/v1/studios/:studioId',
    expectedStatus: 401,
    request: getStudio((seed) => seed.unknownKey),
  },
  {
    name: '401-malformed',
    title: 'GET /v1/studios/{id}, malformed key (a typo: bad checksum) → 401, LOG_LEVEL=warn',
    logLevel: 'warn',
    redis: false,
    bareRoute: '/v1/studios/:studioId',
    expectedStatus: 401,
    request: getStudio((seed) => seed.typoKey),
  },
  {
    name: '403',
    title: 'GET /v1/studios/{id}, key without studio:read → 403, LOG_LEVEL=warn',
    logLevel: 'warn',
    redis: false,
    bareRoute: '/v1/studios/:studioId',
    expectedStatus: 403,
    request: getStudio((seed) => seed.streamOnlyKey),
  },
  {
    name: 'list-100',
    title: `GET /v1/studios?limit=100 (100 of ${SEED_STUDIOS} studios), LOG_LEVEL=warn`,
    logLevel: 'warn',
    redis: false,
    bareRoute: '/v1/studios',
    expectedStatus: 200,
    request: (seed) => ({ path: '/v1/studios?limit=100', headers: bearer(seed.fullKey) }),
  },
  {
    name: 'redis',
    title: 'GET /v1/studios/{id}, valid key, rate-limit counters in Redis (REDIS_URL), LOG_LEVEL=warn',
    logLevel: 'warn',
    redis: true,
    bareRoute: '/v1/studios/:studioId',
    expectedStatus: 200,
    request: getStudio((seed) => seed.fullKey),
  },
]
