import type { Test } from 'tap'
import t from 'tap'
import { generateKeySecret, hashKey } from '../lib/api-keys.js'
import { bearer, errorOf, startGateway } from './helpers/gateway.js'
import { listenLocally, rawRequest } from './helpers/raw-http.js'

t.test('key authentication', async (t) => {
  const gw = await startGateway(t)
  const { secret, id } = await gw.key()

  const expectInvalidKey = async (t: Test, headers: Record<string, string | string[]>, message: RegExp) => {
    const res = await gw.app.inject({ url: '/v1/key', headers })
    t.equal(res.statusCode, 401)
    const error = errorOf(t, res)
    t.equal(error.code, 'invalid_key')
    t.match(error.message, message)
    t.equal(res.headers['www-authenticate'], 'Bearer realm="studio-gateway"')
    t.notOk(res.headers['x-key-scopes'], 'no X-Key-Scopes without a valid key')
    return error
  }

  t.test('Authorization: Bearer is accepted', async (t) => {
    const res = await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })
    t.equal(res.statusCode, 200)
    t.same(res.json(), {
      id,
      prefix: secret.slice(0, 12),
      accountId: 'acct_test',
      scopes: ['studio:read', 'stream:read', 'stream:golive', 'keys:read', 'keys:write'],
      expiresAt: null,
    })
    t.equal(res.headers['x-key-scopes'], 'studio:read, stream:read, stream:golive, keys:read, keys:write')
    t.equal(res.headers['cache-control'], 'no-store')
  })

  t.test('the Bearer scheme is case-insensitive', async (t) => {
    const res = await gw.app.inject({ url: '/v1/key', headers: { authorization: `bearer ${secret}` } })
    t.equal(res.statusCode, 200)
  })

  t.test('X-API-Key is accepted', async (t) => {
    const res = await gw.app.inject({ url: '/v1/key', headers: { 'x-api-key': secret } })
    t.equal(res.statusCode, 200)
  })

  t.test('the same key in both headers is accepted', async (t) => {
    const res = await gw.app.inject({ url: '/v1/key', headers: { ...bearer(secret), 'x-api-key': secret } })
    t.equal(res.statusCode, 200)
  })

  t.test('two different keys in the two headers is 400 invalid_request', async (t) => {
    const other = await gw.key()
    const res = await gw.app.inject({ url: '/v1/key', headers: { ...bearer(secret), 'x-api-key': other.secret } })
    t.equal(res.statusCode, 400)
    const error = errorOf(t, res)
    t.equal(error.code, 'invalid_request')
    t.notMatch(error.message, /sk_live_/, 'the message names no key')
  })

  t.test('no key is 401 invalid_key', async (t) => {
    await expectInvalidKey(t, {}, /no API key sent/)
  })

  t.test('an empty header counts as no key', async (t) => {
    await expectInvalidKey(t, { 'x-api-key': '' }, /no API key sent/)
  })

  t.test('another Authorization scheme is 401', async (t) => {
    await expectInvalidKey(t, { authorization: 'Basic dXNlcjpwYXNz' }, /malformed/)
  })

  t.test('a key in Authorization without the Bearer scheme is malformed (401), even a valid one', async (t) => {
    for (const value of [secret, ` ${secret}`, `Token ${secret}`, `Bearer`, `Bearer ${secret} extra`]) {
      await expectInvalidKey(t, { authorization: value }, /malformed/)
    }
  })

  t.test('two Authorization headers are 400: a proxy in front may read the other one', async (t) => {
    const other = await gw.key()
    const listening = await listenLocally(gw)
    for (const pair of [
      [secret, secret],
      [secret, other.secret],
    ]) {
      const answer = await rawRequest(
        listening,
        `GET /v1/key HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${pair[0]}\r\nauthorization: Bearer ${pair[1]}\r\nConnection: close\r\n\r\n`,
      )
      t.match(answer, /^HTTP\/1\.1 400 /, 'refused before either is used')
      t.match(answer, /"code":"invalid_request"/)
      t.notMatch(answer, /sk_live_[A-Za-z0-9]{8}/, 'the answer names no key')
    }
    const twoKeyHeaders = await rawRequest(
      listening,
      `GET /v1/key HTTP/1.1\r\nHost: x\r\nX-API-Key: ${secret}\r\nX-API-Key: ${secret}\r\nConnection: close\r\n\r\n`,
    )
    t.match(twoKeyHeaders, /^HTTP\/1\.1 400 /, 'two X-API-Key headers too')
  })

  t.test('a malformed key is 401', async (t) => {
    await expectInvalidKey(t, bearer('sk_live_short'), /malformed/)
    await expectInvalidKey(t, bearer(secret.replace('sk_live_', 'sk_prod_')), /malformed/)
    // The prefix is part of the secret: a live key's body under sk_test_ is well formed, and no key.
    await expectInvalidKey(t, bearer(secret.replace('sk_live_', 'sk_test_')), /not recognised/)
  })

  t.test('a key whose checksum does not match (a typo) is 401 without a store lookup', async (t) => {
    const last = secret.at(-1) === 'a' ? 'b' : 'a'
    const misses = gw.app.keyVerifier.stats.misses
    const error = await expectInvalidKey(t, bearer(secret.slice(0, -1) + last), /checksum/)
    t.equal(gw.app.keyVerifier.stats.misses, misses, 'the store was not asked')
    t.notMatch(error.message, /sk_live_[A-Za-z0-9]{4}/, 'the message does not echo the key')
  })

  t.test('a well-formed key that was never issued is 401', async (t) => {
    await expectInvalidKey(t, bearer(generateKeySecret()), /not recognised/)
  })

  t.test('a revoked key is 401', async (t) => {
    const revoked = await gw.key()
    await gw.store.keys.revoke(revoked.id, new Date().toISOString())
    await expectInvalidKey(t, bearer(revoked.secret), /revoked/)
  })

  t.test('an expired key is 401; one that expires later works', async (t) => {
    const expired = await gw.key({ expiresAt: new Date(Date.now() - 1000).toISOString() })
    await expectInvalidKey(t, bearer(expired.secret), /expired/)
    const later = new Date(Date.now() + 3_600_000).toISOString()
    const valid = await gw.key({ expiresAt: later })
    const res = await gw.app.inject({ url: '/v1/key', headers: bearer(valid.secret) })
    t.equal(res.statusCode, 200)
    t.equal(res.json().expiresAt, later)
  })

  t.test('a key expiring while cached stops working at its expiry', async (t) => {
    const soon = await gw.key({ expiresAt: new Date(Date.now() + 300).toISOString() })
    t.equal((await gw.app.inject({ url: '/v1/key', headers: bearer(soon.secret) })).statusCode, 200)
    await new Promise((resolve) => setTimeout(resolve, 350))
    await expectInvalidKey(t, bearer(soon.secret), /expired/)
  })

  t.test('the store holds the SHA-256 of the key, never the secret', async (t) => {
    const record = await gw.store.keys.findByHash(hashKey(secret))
    t.equal(record?.id, id)
    t.equal(record?.hash, hashKey(secret))
    t.notOk(JSON.stringify(record).includes(secret))
  })

  t.test('use of a key is recorded in lastUsedAt', async (t) => {
    const fresh = await gw.key()
    await gw.app.inject({ url: '/v1/key', headers: bearer(fresh.secret) })
    await new Promise((resolve) => setTimeout(resolve, 20))
    const [record] = (await gw.store.keys.list('acct_test')).filter((k) => k.id === fresh.id)
    t.type(record?.lastUsedAt, 'string')
  })
})

t.test('verification cache: a revocation takes effect within KEY_CACHE_TTL', async (t) => {
  const gw = await startGateway(t, { env: { KEY_CACHE_TTL: '300ms' } })
  const { secret, id } = await gw.key()
  t.equal((await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })).statusCode, 200)
  await gw.store.keys.revoke(id, new Date().toISOString())
  t.equal(
    (await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })).statusCode,
    200,
    'still served from the cache right after the revocation',
  )
  await new Promise((resolve) => setTimeout(resolve, 350))
  t.equal((await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })).statusCode, 401, 'refused after the TTL')
})

t.test('verification cache off (KEY_CACHE_TTL=0): a revocation takes effect at once', async (t) => {
  const gw = await startGateway(t, { env: { KEY_CACHE_TTL: '0' } })
  const { secret, id } = await gw.key()
  t.equal((await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })).statusCode, 200)
  await gw.store.keys.revoke(id, new Date().toISOString())
  t.equal((await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })).statusCode, 401)
})

t.test('key verification down is 503 unavailable with Retry-After', async (t) => {
  let failing = false
  const gw = await startGateway(t, {
    env: { KEY_CACHE_TTL: '0' },
    keys: (store) => ({
      ...store.keys,
      findByHash: async (hash) => {
        if (failing) throw new Error('connection refused (simulated)')
        return store.keys.findByHash(hash)
      },
    }),
  })
  const { secret } = await gw.key()
  failing = true
  const res = await gw.app.inject({ url: '/v1/studios', headers: bearer(secret) })
  t.equal(res.statusCode, 503)
  const error = errorOf(t, res)
  t.equal(error.code, 'unavailable')
  t.notMatch(error.message, /connection refused/, 'no internal detail in the message')
  t.equal(res.headers['retry-after'], '1')
  failing = false
  const recovered = await gw.app.inject({ url: '/v1/studios', headers: bearer(secret) })
  t.equal(recovered.statusCode, 200, 'serves again as soon as the store answers')
})

t.test('key verification that hangs is 503 unavailable within a bound', async (t) => {
  const gw = await startGateway(t, {
    env: { KEY_CACHE_TTL: '0' },
    keys: (store) => ({ ...store.keys, findByHash: () => new Promise(() => {}) }),
  })
  const { secret } = await gw.key()
  const started = Date.now()
  const res = await gw.app.inject({ url: '/v1/key', headers: bearer(secret) })
  t.equal(res.statusCode, 503)
  t.equal(errorOf(t, res).code, 'unavailable')
  t.ok(Date.now() - started < 3000, 'answered rather than hanging')
})
