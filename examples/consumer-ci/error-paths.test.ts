/**
 * The consumer's CI: its error path, run against a real gateway with a test key. Every code of
 * the catalog is asked for with `Simulate-Error`, through the consumer's own code (go-live.ts) and
 * the typed client's retry policy: the transient codes are retried with backoff (after
 * Retry-After where the answer names one) and the call then succeeds, or gives up after its
 * attempts; the others are never retried.
 *
 *   STUDIO_GATEWAY_URL=http://127.0.0.1:3000 STUDIO_TEST_KEY=sk_test_… npm test
 */
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import type { ApiErrorCode, ClientEvent } from '@studio-gateway/client'
import { connect, goLive } from './go-live.js'

const baseUrl = process.env.STUDIO_GATEWAY_URL ?? 'http://127.0.0.1:3000'
const apiKey = process.env.STUDIO_TEST_KEY ?? ''

/** The spec's transient codes: retried with backoff, `rate_limited` after its Retry-After. */
const TRANSIENT = ['unavailable', 'bad_gateway', 'internal', 'rate_limited'] as const
/** Everything else: fails the same way until the request or the key changes. */
const FINAL = ['invalid_request', 'invalid_key', 'insufficient_scope', 'not_found', 'write_disabled'] as const
/** Codes that come with a Retry-After (1 s when simulated): the client waits at least that long. */
const WITH_RETRY_AFTER = new Set<string>(['unavailable', 'rate_limited'])

// Every code of the API's catalog is covered: a code added to the API fails this line at compile time.
type Uncovered = Exclude<ApiErrorCode, (typeof TRANSIENT)[number] | (typeof FINAL)[number]>
const everyCodeCovered: [Uncovered] extends [never] ? true : Uncovered = true

/** The global fetch, adding `Simulate-Error: code` to the first `times` attempts. */
function simulating(code: string, times: number): typeof fetch {
  let sent = 0
  return (input, init) => {
    const headers = new Headers(init?.headers)
    if (sent++ < times) headers.set('Simulate-Error', code)
    return fetch(input, { ...init, headers })
  }
}

describe('the go-live error path against the gateway', { concurrency: false }, () => {
  let studioId = ''

  before(async () => {
    assert.match(apiKey, /^sk_test_/, 'STUDIO_TEST_KEY must be a test key')
    assert.equal(everyCodeCovered, true)
    const { data } = await connect({ baseUrl, apiKey }).listStudios({ limit: 1 })
    assert.ok(data[0], 'the test key’s account has a sandbox studio')
    studioId = data[0].id
  })

  for (const code of TRANSIENT) {
    test(`${code}: retried with backoff, then the call succeeds`, async () => {
      const events: ClientEvent[] = []
      const client = connect({ baseUrl, apiKey, fetch: simulating(code, 1), onEvent: (event) => events.push(event) })
      const outcome = await goLive(client, studioId, 'CI run')
      assert.deepEqual(outcome, { ok: true, status: 'live' })
      const retries = events.filter((event) => event.type === 'retry')
      assert.equal(retries.length, 1)
      const [retry] = retries
      assert.ok(retry?.type === 'retry')
      assert.equal(retry.error.code, code)
      if (WITH_RETRY_AFTER.has(code)) assert.ok(retry.delayMs >= 1000, 'waited for Retry-After')
    })

    test(`${code}: given up once every attempt failed`, async () => {
      const client = connect({ baseUrl, apiKey, maxAttempts: 2, fetch: simulating(code, Number.POSITIVE_INFINITY) })
      const outcome = await goLive(client, studioId, 'CI run')
      assert.equal(outcome.ok, false)
      if (outcome.ok) return
      assert.equal(outcome.code, code)
      assert.equal(outcome.transient, true)
      assert.equal(outcome.attempts, 2)
      assert.match(outcome.requestId ?? '', /^req_/)
    })
  }

  for (const code of FINAL) {
    test(`${code}: never retried`, async () => {
      const client = connect({ baseUrl, apiKey, fetch: simulating(code, Number.POSITIVE_INFINITY) })
      const outcome = await goLive(client, studioId, 'CI run')
      assert.equal(outcome.ok, false)
      if (outcome.ok) return
      assert.equal(outcome.code, code)
      assert.equal(outcome.transient, false)
      assert.equal(outcome.attempts, 1)
      assert.equal(outcome.requiredScope, code === 'insufficient_scope' ? 'stream:golive' : undefined)
      assert.match(outcome.requestId ?? '', /^req_/)
    })
  }
})
