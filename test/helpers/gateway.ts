import { Writable } from 'node:stream'
import type { InjectOptions } from 'fastify'
import type { Test } from 'tap'
import { type App, buildApp } from '../../app.js'
import { type Config, loadConfig } from '../../config.js'
import { displayPrefix, type Mode, type Scope, scopes } from '../../lib/api-keys.js'
import { type MintKeyInput, mintKey } from '../../lib/mint-key.js'
import type { KeyStore, SqlStore, StudioService } from '../../stores/types.js'
import { contract } from './contract.js'
import { freshStoreEnv } from './database.js'

export const allScopes: Scope[] = [...scopes]

/**
 * Every key secret minted in this test process (by `gw.key()`, or handed to `rememberSecret`).
 * Each gateway's log is searched for all of them when it closes, across the whole suite.
 */
const mintedSecrets = new Set<string>()

export function rememberSecret(secret: string): string {
  mintedSecrets.add(secret)
  return secret
}

/** A secret-shaped token (live or test) that redaction (`sk_live_[redacted]`) left whole. */
const KEY_SHAPED = /sk_(?:live|test)_[0-9A-Za-z]{8,}/

/**
 * What of a secret a log must never hold: the secret, its 32 random characters (a percent-encoded
 * or otherwise re-encoded copy), and anything shaped like a key.
 */
export function secretsIn(text: string, secrets: Iterable<string> = mintedSecrets): string[] {
  const found: string[] = []
  for (const secret of secrets) {
    if (text.includes(secret) || text.includes(secret.slice(8, 40))) found.push(displayPrefix(secret))
  }
  const shaped = KEY_SHAPED.exec(text)
  if (shaped) found.push(`${shaped[0].slice(0, 12)}… (key-shaped)`)
  return found
}

export interface GatewayOptions {
  /**
   * Environment variables, as the server would read them. The store is fresh and of the engine
   * under test (see freshStoreEnv): these cannot choose it, `storeEnv` can.
   */
  env?: Record<string, string>
  /** The store to open (DATA_DIR or DATABASE_URL): reuse another gateway's `storeEnv` to test persistence. */
  storeEnv?: Record<string, string>
  /** Replace parts of the store, e.g. a key store that fails. */
  keys?: (store: SqlStore) => KeyStore
  studios?: (store: SqlStore, studios: StudioService) => StudioService
  /**
   * Receives each way an injected response departs from openapi.yaml. By default each one fails
   * the test: every response a test produces is checked against the published contract.
   */
  onContractViolation?: (violation: string) => void
}

export interface TestGateway {
  app: App
  store: SqlStore
  config: Config
  /** What selects this gateway's store: `{ DATA_DIR }` (SQLite) or `{ DATABASE_URL }` (PostgreSQL). */
  storeEnv: Record<string, string>
  /** Every log line the app wrote, parsed. */
  logs: Record<string, unknown>[]
  /** Raw log text, to search for secrets. */
  logText: () => string
  /** Mints and stores a key; returns its secret and record. */
  key(input?: Partial<MintKeyInput>): Promise<{ secret: string; id: string; accountId: string }>
  /** Creates a studio (live unless `mode` is `test`: a sandbox studio); returns its id. */
  studio(accountId: string, name?: string, mode?: Mode): Promise<string>
  /** Closes the app and the store (also done by teardown). */
  close(): Promise<void>
}

/**
 * The real app, built as the server builds it (UPSTREAM_URL in `env` included), on a fresh store
 * of the engine under test: SQLite in a temporary directory, or, when the test process has
 * DATABASE_URL, PostgreSQL on a schema of its own. Closed, and its store removed, at the end of the test.
 */
export async function startGateway(t: Test, options: GatewayOptions = {}): Promise<TestGateway> {
  const storeEnv = options.storeEnv ?? (await freshStoreEnv(t))
  const { DATABASE_URL: _ignored, ...env } = options.env ?? {}
  // Shedding on event-loop delay measures the machine: with test files run side by side on a busy
  // machine, a starved process lags for seconds and would answer 503 where the test expects its
  // code. Off unless a test sets it (load-shedding.test.ts does).
  const config = loadConfig({ LOG_LEVEL: 'info', SHED_MAX_EVENT_LOOP_DELAY: '0', ...env, ...storeEnv })
  const chunks: string[] = []
  const logStream = new Writable({
    write(chunk, _encoding, callback) {
      chunks.push(chunk.toString())
      callback()
    },
  })
  const app = await buildApp(config, {
    logStream,
    ...(options.keys ? { keys: options.keys } : {}),
    ...(options.studios ? { studios: options.studios } : {}),
  })
  const { store } = app
  await app.ready()
  checkInjections(app, options.onContractViolation ?? ((violation) => t.fail(`contract: ${violation}`)))
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await app.close()
    const leaked = secretsIn(logText())
    if (leaked.length > 0) throw new Error(`a key secret reached the log of a test gateway: ${leaked.join(', ')}…`)
  }
  const logText = () => chunks.join('')
  t.teardown(close)
  return {
    app,
    store,
    config,
    storeEnv,
    get logs() {
      return logText()
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>)
    },
    logText,
    async key(input = {}) {
      const { record, secret } = mintKey({ accountId: 'acct_test', scopes: allScopes, ...input })
      rememberSecret(secret)
      await store.keys.insert(record)
      return { secret, id: record.id, accountId: record.accountId }
    },
    async studio(accountId, name = 'Studio', mode = 'live') {
      return (await store.studios.createStudio({ accountId, name, mode })).id
    },
    close,
  }
}

/**
 * Wraps `app.inject` so every response is checked against openapi.yaml (the promise form of
 * inject, the one the tests use).
 */
function checkInjections(app: App, report: (violation: string) => void) {
  const inject = app.inject.bind(app)
  const checked = async (options: InjectOptions | string) => {
    const response = await inject(options)
    const { method = 'GET', url = '/' } = response.raw.req
    for (const violation of contract().check({ ...response, method, url, body: response.body })) report(violation)
    return response
  }
  app.inject = checked as App['inject']
}

export const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` })

/** The envelope of an error response, asserting its shape and its agreement with X-Request-Id. */
export function errorOf(t: Test, response: { json: () => unknown; headers: Record<string, unknown> }) {
  const body = response.json() as { error: Record<string, unknown> }
  t.type(body.error, 'object', 'the body is the error envelope')
  t.equal(body.error.requestId, response.headers['x-request-id'], 'requestId equals X-Request-Id')
  t.type(body.error.message, 'string')
  return body.error as { code: string; message: string; requestId: string; requiredScope?: string }
}
