import t from 'tap'
import { loadConfig } from '../config.js'
import { openStore } from '../stores/index.js'
import type { StudioRecord } from '../stores/types.js'
import { bearer, errorOf, startGateway } from './helpers/gateway.js'

t.test('studios, stream and sessions', async (t) => {
  const gw = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
  const mine = await gw.key({ accountId: 'acct_mine' })
  const theirs = await gw.key({ accountId: 'acct_theirs' })
  const created: StudioRecord[] = []
  for (let i = 0; i < 5; i++)
    created.push(await gw.store.studios.createStudio({ accountId: 'acct_mine', name: `Studio ${i}` }))
  // The list order is (createdAt, id): studios created within one millisecond are ordered by id.
  created.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || (a.id < b.id ? -1 : 1))
  const ids = created.map((studio) => studio.id)
  const theirStudio = await gw.studio('acct_theirs', 'Not yours')
  const get = (url: string, secret = mine.secret) => gw.app.inject({ url, headers: bearer(secret) })

  t.test('GET /v1/studios lists the account’s studios, oldest first, 20 by default', async (t) => {
    const res = await get('/v1/studios')
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.same(
      body.data.map((s: { id: string }) => s.id),
      ids,
    )
    t.equal(body.nextCursor, null)
    t.match(body.data[0], { id: ids[0], name: created[0]?.name, createdAt: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/ })
    t.same(Object.keys(body.data[0]).sort(), ['createdAt', 'id', 'name'], 'no account id or other internals')
  })

  t.test('pagination follows nextCursor to the end, without gaps or repeats', async (t) => {
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`
      const res = await get(`/v1/studios?limit=2${query}`)
      t.equal(res.statusCode, 200)
      const body = res.json() as { data: Array<{ id: string }>; nextCursor: string | null }
      t.ok(body.data.length <= 2)
      seen.push(...body.data.map((s) => s.id))
      cursor = body.nextCursor
      pages++
    } while (cursor !== null && pages < 10)
    t.same(seen, ids)
    t.equal(pages, 3)
  })

  t.test('a cursor issued for another account is 400', async (t) => {
    const first = (await get('/v1/studios?limit=1')).json()
    const res = await get(`/v1/studios?cursor=${encodeURIComponent(first.nextCursor)}`, theirs.secret)
    t.equal(res.statusCode, 400)
    t.equal(errorOf(t, res).code, 'invalid_request')
  })

  t.test('a tampered cursor is 400', async (t) => {
    const { nextCursor } = (await get('/v1/studios?limit=1')).json() as { nextCursor: string }
    const [payload, tag] = nextCursor.split('.') as [string, string]
    const forged = Buffer.from(JSON.stringify(['0000-01-01T00:00:00.000Z', ''])).toString('base64url')
    for (const cursor of [`${forged}.${tag}`, `${payload}.${tag.slice(0, -2)}`, payload, `${payload}.`, `.${tag}`]) {
      const res = await get(`/v1/studios?cursor=${encodeURIComponent(cursor)}`)
      t.equal(res.statusCode, 400, cursor)
      t.match(errorOf(t, res).message, /"cursor"/)
    }
  })

  t.test('only the exact cursor issued is valid: no padding, spaces, or the other base64 alphabet', async (t) => {
    const { nextCursor } = (await get('/v1/studios?limit=1')).json() as { nextCursor: string }
    t.equal((await get(`/v1/studios?cursor=${encodeURIComponent(nextCursor)}`)).statusCode, 200, 'as issued')
    const [payload, tag] = nextCursor.split('.') as [string, string]
    const otherAlphabet = tag.replaceAll('-', '+').replaceAll('_', '/')
    const variants = [
      `${nextCursor}=`,
      `${nextCursor}==`,
      `${payload}.${tag.slice(0, 5)} ${tag.slice(5)}`,
      `${payload} .${tag}`,
      `${payload}=.${tag}`,
      `${payload}.${Buffer.from(tag, 'base64url').toString('base64')}`,
    ]
    if (otherAlphabet !== tag) variants.push(`${payload}.${otherAlphabet}`)
    for (const cursor of variants) {
      const res = await get(`/v1/studios?cursor=${encodeURIComponent(cursor)}`)
      t.equal(res.statusCode, 400, JSON.stringify(cursor))
      t.equal(errorOf(t, res).code, 'invalid_request')
    }
  })

  t.test('a cursor of the studios list is refused by a sessions list, and the reverse', async (t) => {
    const { nextCursor } = (await get('/v1/studios?limit=1')).json() as { nextCursor: string }
    const res = await get(`/v1/studios/${ids[0]}/sessions?cursor=${encodeURIComponent(nextCursor)}`)
    t.equal(res.statusCode, 400)
  })

  t.test('GET /v1/studios/{id} returns the studio', async (t) => {
    const res = await get(`/v1/studios/${ids[1]}`)
    t.equal(res.statusCode, 200)
    t.same(res.json(), { id: ids[1], name: created[1]?.name, createdAt: created[1]?.createdAt })
  })

  t.test('a studio its owner just read (kept in memory) is still a 404 for another account', async (t) => {
    t.equal((await get(`/v1/studios/${theirStudio}`, theirs.secret)).statusCode, 200, 'read by its owner')
    t.equal((await get(`/v1/studios/${theirStudio}`, theirs.secret)).statusCode, 200, 'again, from memory')
    const res = await get(`/v1/studios/${theirStudio}`)
    t.equal(res.statusCode, 404)
    t.equal(errorOf(t, res).code, 'not_found')
    t.equal((await get(`/v1/studios/${ids[2]}`, theirs.secret)).statusCode, 404, 'nor the reverse')
  })

  t.test('a studio created after a miss is found at once (misses are not remembered)', async (t) => {
    const id = 'std_createdLater000001'
    t.equal((await get(`/v1/studios/${id}`)).statusCode, 404)
    await gw.store.studios.createStudio({ accountId: 'acct_mine', name: 'Later', id })
    t.equal((await get(`/v1/studios/${id}`)).statusCode, 200)
  })

  t.test('a studio created by this process or another one is listed at once', async (t) => {
    const names = async () => (await get('/v1/studios?limit=100')).json().data.map((s: { name: string }) => s.name)
    const before = await names()
    t.same(await names(), before, 'the same page twice (the second from memory on the embedded store)')
    await gw.studio('acct_mine', 'Created in process')
    t.same(await names(), [...before, 'Created in process'], 'a creation by the gateway’s own store')
    const other = await openStore(loadConfig(gw.storeEnv))
    t.teardown(() => other.close())
    await other.studios.createStudio({ accountId: 'acct_mine', name: 'Created elsewhere' })
    t.same(
      await names(),
      [...before, 'Created in process', 'Created elsewhere'],
      'a creation by another connection (the command line, another instance)',
    )
  })

  t.test('answers kept as JSON from memory are the bytes the schema serializer gives, headers too', async (t) => {
    // A name JSON must escape (quote, backslash, a control character), and non-ASCII ones.
    const name = 'Kept "quoted" \\ back\\slash \u0001 tab\t é 🎥 </script>'
    const id = await gw.studio('acct_kept', name)
    const kept = await gw.key({ accountId: 'acct_kept' })
    for (const url of [`/v1/studios/${id}`, '/v1/studios', '/v1/studios?limit=1']) {
      // The first answer is serialized from the store's answer; the next ones come from memory.
      const answers = [await get(url, kept.secret), await get(url, kept.secret), await get(url, kept.secret)]
      const [first] = answers as [(typeof answers)[number]]
      t.equal(first.statusCode, 200, url)
      for (const later of answers.slice(1)) {
        t.equal(later.body, first.body, `${url}: the same bytes`)
        t.equal(later.headers['content-type'], 'application/json; charset=utf-8', `${url}: the same content type`)
        t.equal(later.headers['content-length'], first.headers['content-length'])
      }
      const body = first.json()
      const studio = 'data' in body ? body.data[0] : body
      t.equal(studio.name, name, `${url}: the name survives JSON`)
      t.same(Object.keys(studio).sort(), ['createdAt', 'id', 'name'], `${url}: only the schema's properties`)
    }
    // The kept text follows the store: a new studio shows on the next answer.
    const before = (await get('/v1/studios', kept.secret)).json().data.length
    await gw.studio('acct_kept', 'Second')
    t.equal((await get('/v1/studios', kept.secret)).json().data.length, before + 1, 'a kept page is not served stale')
    t.equal((await get(`/v1/studios/${id}`)).statusCode, 404, 'nor a kept studio to another account')
  })

  t.test('GET /v1/studios/{id}/stream of a new studio is offline', async (t) => {
    const res = await get(`/v1/studios/${ids[0]}/stream`)
    t.equal(res.statusCode, 200)
    t.match(res.json(), { studioId: ids[0], status: 'offline', title: null, startedAt: null, updatedAt: String })
  })

  t.test('sessions: newest first, only ended ones, paginated', async (t) => {
    const studioId = ids[2] as string
    const post = (action: string, payload?: object) =>
      gw.app.inject({
        method: 'POST',
        url: `/v1/studios/${studioId}/stream/${action}`,
        headers: bearer(mine.secret),
        ...(payload ? { payload } : {}),
      })
    for (const title of ['first', 'second', 'third']) {
      t.equal((await post('go-live', { title })).statusCode, 200)
      t.equal((await post('go-offline')).statusCode, 200)
    }
    t.equal((await post('go-live', { title: 'on air' })).statusCode, 200)
    const page1 = (await get(`/v1/studios/${studioId}/sessions?limit=2`)).json()
    t.same(
      page1.data.map((s: { title: string }) => s.title),
      ['third', 'second'],
    )
    t.match(page1.data[0], { id: /^ses_/, studioId, startedAt: String, endedAt: String })
    const page2 = (
      await get(`/v1/studios/${studioId}/sessions?limit=2&cursor=${encodeURIComponent(page1.nextCursor)}`)
    ).json()
    t.same(
      page2.data.map((s: { title: string }) => s.title),
      ['first'],
    )
    t.equal(page2.nextCursor, null)
    t.equal((await post('go-offline')).statusCode, 200)
  })

  t.test('another account’s studio answers exactly as a missing one, on every studio route', async (t) => {
    const routes = [
      { method: 'GET', path: '' },
      { method: 'GET', path: '/stream' },
      { method: 'GET', path: '/sessions' },
      { method: 'POST', path: '/stream/go-live' },
      { method: 'POST', path: '/stream/go-offline' },
    ] as const
    for (const route of routes) {
      const answer = async (studioId: string) => {
        const res = await gw.app.inject({
          method: route.method,
          url: `/v1/studios/${studioId}${route.path}`,
          headers: { ...bearer(mine.secret), 'x-request-id': 'same-id' },
        })
        // The rate-limit counters move with every request, whatever it asks for: compared apart.
        const {
          date: _date,
          'ratelimit-remaining': remaining,
          'ratelimit-reset': _reset,
          ratelimit: _state,
          ...headers
        } = res.headers
        return { answer: { status: res.statusCode, body: res.body, headers }, remaining: Number(remaining) }
      }
      const { answer: foreign, remaining } = await answer(theirStudio)
      const { answer: missing, remaining: remainingAfter } = await answer('std_doesNotExist00000')
      t.equal(foreign.status, 404, `${route.method} ${route.path || '/'}: 404`)
      t.same(foreign, missing, `${route.method} ${route.path || '/'}: identical to a missing studio`)
      t.equal(remainingAfter, remaining - 1, 'both spent the same budget, one request each')
      t.equal(JSON.parse(foreign.body).error.code, 'not_found')
    }
    const stream = (await get(`/v1/studios/${theirStudio}/stream`, theirs.secret)).json()
    t.equal(stream.status, 'offline', 'the other account’s stream was not touched')
  })

  t.test('any studio id shape is a 404, never a 400', async (t) => {
    for (const id of [
      'x',
      'std_',
      '123',
      '%20',
      'a'.repeat(300),
      '..',
      'std_DemoMainStage001%00',
      encodeURIComponent('ü🙂'),
    ]) {
      const res = await get(`/v1/studios/${id}`)
      t.equal(res.statusCode, 404, id)
      t.equal(errorOf(t, res).code, 'not_found')
    }
  })
})
