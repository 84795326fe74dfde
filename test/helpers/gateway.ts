import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { InjectOptions } from 'fastify'
import type { Test } from 'tap'
import { type App, buildApp } from '../../app.js'
import { type Config, loadConfig } from '../../config.js'
import type { Scope } from '../../lib/api-keys.js'
import { type MintKeyInput, mintKey } from '../../lib/mint-key.js'
import { cursorSecretOf } from '../../server.js'
import { openSqliteStore } from '../../stores/sqlite.js'
import type { KeyStore, SqlStore, StudioService } from '../../stores/types.js'
import { contract } from './contract.js'

export const allScopes: Scope[] = ['studio:read', 'stream:read', 'stream:golive']

export interface GatewayOptions {
  /** Environment variables, as the server would read them (DATA_DIR is set to a fresh directory). */
  env?: Record<string, string>
  /** Reuse a data directory (to test persistence); a fresh temporary one otherwise. */
  dataDir?: string
  /** Replace parts of the store, e.g. a key store that fails. */
  keys?: (store: SqlStore) => KeyStore
  studios?: (store: SqlStore) => StudioService
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
  dataDir: string
  /** Every log line the app wrote, parsed. */
  logs: Record<string, unknown>[]
  /** Raw log text, to search for secrets. */
  logText: () => string
  /** Mints and stores a key; returns its secret and record. */
  key(input?: Partial<MintKeyInput>): Promise<{ secret: string; id: string; accountId: string }>
  studio(accountId: string, name?: string): Promise<string>
  /** Closes the app and the store (also done by teardown). */
  close(): Promise<void>
}

/** The real app, on a fresh SQLite store in a temporary directory, closed at the end of the test. */
export async function startGateway(t: Test, options: GatewayOptions = {}): Promise<TestGateway> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'studio-gateway-test-')))
  const config = loadConfig({ LOG_LEVEL: 'info', ...options.env, DATA_DIR: dataDir })
  const store = await openSqliteStore(dataDir)
  const chunks: string[] = []
  const logStream = new Writable({
    write(chunk, _encoding, callback) {
      chunks.push(chunk.toString())
      callback()
    },
  })
  const app = await buildApp({
    config,
    keys: options.keys ? options.keys(store) : store.keys,
    studios: options.studios ? options.studios(store) : store.studios,
    cursorSecret: await cursorSecretOf(store),
    logStream,
    dependencyChecks: { [store.dialect]: () => store.ping() },
  })
  await app.ready()
  checkInjections(app, options.onContractViolation ?? ((violation) => t.fail(`contract: ${violation}`)))
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await app.close()
    await store.close()
  }
  t.teardown(async () => {
    await close()
    if (options.dataDir === undefined) await rm(dataDir, { recursive: true, force: true })
  })
  const logText = () => chunks.join('')
  return {
    app,
    store,
    config,
    dataDir,
    get logs() {
      return logText()
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>)
    },
    logText,
    async key(input = {}) {
      const { record, secret } = mintKey({ accountId: 'acct_test', scopes: allScopes, ...input })
      await store.keys.insert(record)
      return { secret, id: record.id, accountId: record.accountId }
    },
    async studio(accountId, name = 'Studio') {
      return (await store.studios.createStudio({ accountId, name })).id
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
