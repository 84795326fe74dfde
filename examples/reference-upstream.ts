/**
 * A reference upstream studio service: the contract of schemas/upstream.ts (and the README's
 * "Upstream studio service" section) as a small, in-memory Fastify app. The tests start it on a
 * loopback port and make it slow, broken, garbage-returning or down on demand; run it directly
 * to try the gateway's upstream mode:
 *
 *   npx tsx examples/reference-upstream.ts          # listens on 127.0.0.1:4000 (PORT to change)
 *   UPSTREAM_URL=http://127.0.0.1:4000 npm start
 */
import { pathToFileURL } from 'node:url'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import Fastify, { type FastifyRequest } from 'fastify'
import { DEMO_ACCOUNT, DEMO_STUDIOS } from '../lib/demo-seed.js'
import { newSessionId, newStudioId } from '../lib/ids.js'
import {
  UPSTREAM_HEADERS,
  UpstreamGoLiveBody,
  UpstreamPageQuery,
  type UpstreamSession,
  UpstreamSessionPage,
  UpstreamStream,
  UpstreamStudio,
  UpstreamStudioPage,
} from '../schemas/upstream.js'

/** Ways to misbehave, one per failure the gateway must map (see stores/http.ts). */
export type UpstreamFault =
  /** Answers correctly, but only after `delayMs`. */
  | { readonly kind: 'slow'; readonly delayMs: number }
  /** 500 with a JSON error body. */
  | { readonly kind: 'error' }
  /** Any other status, with an empty JSON object as body. */
  | { readonly kind: 'status'; readonly status: number }
  /** 200 with `Content-Type: application/json` and a body that is not JSON. */
  | { readonly kind: 'garbage' }
  /** 200 with this JSON body, whatever was asked (to break the schema, or the contract subtly). */
  | { readonly kind: 'body'; readonly body: unknown }
  /** Closes the connection without answering. */
  | { readonly kind: 'reset' }
  /** Answers bytes that are not HTTP, then closes. */
  | { readonly kind: 'not-http' }

export interface ReceivedCall {
  readonly method: string
  readonly url: string
  readonly headers: FastifyRequest['headers']
}

interface StudioRow extends UpstreamStudio {
  readonly accountId: string
}

const Problem = Type.Object({ error: Type.String() })
const StudioParams = Type.Object({ studioId: Type.String() })
const AccountHeaders = Type.Object({ [UPSTREAM_HEADERS.account]: Type.String({ minLength: 1 }) })

export interface ReferenceUpstreamOptions {
  readonly host?: string
  /** 0 (the default): any free port. */
  readonly port?: number
}

export async function startReferenceUpstream(options: ReferenceUpstreamOptions = {}) {
  const studios = new Map<string, StudioRow>()
  const streams = new Map<string, UpstreamStream>()
  const sessions = new Map<string, UpstreamSession[]>()
  const received: ReceivedCall[] = []
  let fault: { fault: UpstreamFault; remaining: number } | null = null

  const app = Fastify({ logger: false }).withTypeProvider<TypeBoxTypeProvider>()

  app.addHook('onRequest', async (request, reply) => {
    received.push({ method: request.method, url: request.url, headers: request.headers })
    if (fault === null) return
    const current = fault.fault
    if (--fault.remaining <= 0) fault = null
    switch (current.kind) {
      case 'slow':
        await new Promise((resolve) => setTimeout(resolve, current.delayMs))
        return
      case 'error':
        return reply.code(500).send({ error: 'simulated failure' })
      case 'status':
        return reply.code(current.status).send({})
      case 'garbage':
        return reply.code(200).type('application/json').send('{"data": [oops')
      case 'body':
        return reply.code(200).type('application/json').send(JSON.stringify(current.body))
      case 'reset':
        reply.hijack()
        request.raw.socket.destroy()
        return
      case 'not-http':
        reply.hijack()
        request.raw.socket.end('SSH-2.0-OpenSSH_9.6\r\n\r\n')
        return
    }
  })

  const accountOf = (request: FastifyRequest) => request.headers[UPSTREAM_HEADERS.account] as string
  const ownStudio = (request: FastifyRequest, studioId: string) => {
    const studio = studios.get(studioId)
    return studio !== undefined && studio.accountId === accountOf(request) ? studio : undefined
  }
  const notFound = { error: 'no such studio in this account' }
  const badPosition = { error: 'after is not a position this service issued' }
  const problemResponses = { 400: Problem, 404: Problem }

  /**
   * Pages by the id of the last item served; `next` is this service's own opaque token. A token
   * it did not issue (an unknown id) is undefined: the route answers 400.
   */
  function paginate<T>(items: T[], limit: number, after: string | undefined, keyOf: (item: T) => string) {
    let start = 0
    if (after !== undefined) {
      const key = Buffer.from(after, 'base64url').toString('utf8')
      start = items.findIndex((item) => keyOf(item) === key) + 1
      if (start === 0) return undefined
    }
    const data = items.slice(start, start + limit)
    const last = data.at(-1)
    const more = start + limit < items.length && last !== undefined
    return { data, next: more ? Buffer.from(keyOf(last)).toString('base64url') : null }
  }

  app.get('/health', async () => ({ status: 'ok' }))

  app.get(
    '/studios',
    {
      schema: {
        headers: AccountHeaders,
        querystring: UpstreamPageQuery,
        response: { 200: UpstreamStudioPage, 400: Problem },
      },
    },
    async (request, reply) => {
      const own = [...studios.values()]
        .filter((studio) => studio.accountId === accountOf(request))
        .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || (a.id < b.id ? -1 : 1))
        .map(({ accountId: _accountId, ...studio }) => studio)
      return (
        paginate(own, request.query.limit, request.query.after, (studio) => studio.id) ??
        reply.code(400).send(badPosition)
      )
    },
  )

  app.get(
    '/studios/:studioId',
    {
      schema: { headers: AccountHeaders, params: StudioParams, response: { 200: UpstreamStudio, ...problemResponses } },
    },
    async (request, reply) => {
      const studio = ownStudio(request, request.params.studioId)
      if (!studio) return reply.code(404).send(notFound)
      const { accountId: _accountId, ...visible } = studio
      return visible
    },
  )

  app.get(
    '/studios/:studioId/stream',
    {
      schema: { headers: AccountHeaders, params: StudioParams, response: { 200: UpstreamStream, ...problemResponses } },
    },
    async (request, reply) => {
      if (!ownStudio(request, request.params.studioId)) return reply.code(404).send(notFound)
      return streams.get(request.params.studioId) as UpstreamStream
    },
  )

  app.get(
    '/studios/:studioId/sessions',
    {
      schema: {
        headers: AccountHeaders,
        params: StudioParams,
        querystring: UpstreamPageQuery,
        response: { 200: UpstreamSessionPage, ...problemResponses },
      },
    },
    async (request, reply) => {
      if (!ownStudio(request, request.params.studioId)) return reply.code(404).send(notFound)
      const newestFirst = [...(sessions.get(request.params.studioId) ?? [])].reverse()
      return (
        paginate(newestFirst, request.query.limit, request.query.after, (session) => session.id) ??
        reply.code(400).send(badPosition)
      )
    },
  )

  app.post(
    '/studios/:studioId/stream/go-live',
    {
      schema: {
        headers: AccountHeaders,
        params: StudioParams,
        body: UpstreamGoLiveBody,
        response: { 200: UpstreamStream, ...problemResponses },
      },
    },
    async (request, reply) => {
      const { studioId } = request.params
      if (!ownStudio(request, studioId)) return reply.code(404).send(notFound)
      const stream = streams.get(studioId) as UpstreamStream
      // Idempotent: live stays live, unchanged.
      if (stream.status === 'live') return stream
      const at = new Date().toISOString()
      const live: UpstreamStream = { studioId, status: 'live', title: request.body.title, startedAt: at, updatedAt: at }
      streams.set(studioId, live)
      return live
    },
  )

  app.post(
    '/studios/:studioId/stream/go-offline',
    {
      schema: {
        headers: AccountHeaders,
        params: StudioParams,
        body: Type.Object({}),
        response: { 200: UpstreamStream, ...problemResponses },
      },
    },
    async (request, reply) => {
      const { studioId } = request.params
      if (!ownStudio(request, studioId)) return reply.code(404).send(notFound)
      const stream = streams.get(studioId) as UpstreamStream
      if (stream.status === 'offline') return stream
      const at = new Date().toISOString()
      const ended: UpstreamSession = {
        id: newSessionId(),
        studioId,
        title: stream.title,
        startedAt: stream.startedAt as string,
        endedAt: at,
      }
      sessions.set(studioId, [...(sessions.get(studioId) ?? []), ended])
      const offline: UpstreamStream = { studioId, status: 'offline', title: null, startedAt: null, updatedAt: at }
      streams.set(studioId, offline)
      return offline
    },
  )

  const host = options.host ?? '127.0.0.1'
  await app.listen({ host, port: options.port ?? 0 })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  let listening = true

  return {
    url: `http://${host}:${port}`,
    app,
    /** Every call received, in order: method, URL and headers. */
    received,

    /** Makes the next `times` calls misbehave (every call until healed when omitted); null heals. */
    setFault(next: UpstreamFault | null, times = Number.POSITIVE_INFINITY) {
      fault = next === null ? null : { fault: next, remaining: times }
    },

    addStudio(accountId: string, name: string, id = newStudioId()): UpstreamStudio {
      const createdAt = new Date().toISOString()
      studios.set(id, { id, accountId, name, createdAt })
      streams.set(id, { studioId: id, status: 'offline', title: null, startedAt: null, updatedAt: createdAt })
      return { id, name, createdAt }
    },

    /** Down: stops listening and drops open connections, so calls are refused. */
    async stop() {
      if (!listening) return
      listening = false
      const closed = new Promise((resolve) => app.server.close(resolve))
      app.server.closeAllConnections()
      await closed
    },

    /** Up again, on the same port. */
    async start() {
      if (listening) return
      await new Promise<void>((resolve, reject) => {
        app.server.once('error', reject)
        app.server.listen(port, host, () => {
          app.server.off('error', reject)
          resolve()
        })
      })
      listening = true
    },

    async close() {
      await this.start()
      app.server.closeAllConnections()
      await app.close()
    },
  }
}

export type ReferenceUpstream = Awaited<ReturnType<typeof startReferenceUpstream>>

// Run directly: serve the demo account's studios, so the README's examples work in upstream mode.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const upstream = await startReferenceUpstream({ port: Number(process.env.PORT ?? 4000) })
  for (const studio of DEMO_STUDIOS) upstream.addStudio(DEMO_ACCOUNT, studio.name, studio.id)
  process.stdout.write(`reference upstream studio service on ${upstream.url} (${DEMO_ACCOUNT}: 2 studios)\n`)
  process.on('SIGINT', () => void upstream.close())
  process.on('SIGTERM', () => void upstream.close())
}
