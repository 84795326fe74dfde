import type { TSchema } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { Pool } from 'undici'
import type { Session, Stream, Studio } from '../schemas/resources.js'
import {
  UPSTREAM_HEADERS,
  UPSTREAM_STUDIO_ID,
  type UpstreamSession,
  UpstreamSessionPage,
  UpstreamStream,
  UpstreamStudio,
  UpstreamStudioPage,
} from '../schemas/upstream.js'
import { BadPosition, UpstreamBrokeContract, UpstreamUnavailable } from './errors.js'
import type { CallContext, PageRequest, StudioService } from './types.js'

/**
 * The studio service over HTTP: studios, streams, sessions and the go-live / go-offline
 * transitions come from an upstream studio service (UPSTREAM_URL) whose contract is written in
 * schemas/upstream.ts and the README. Every answer is checked against that contract before a
 * client sees it:
 *   - 200 with a JSON body that matches its schema → the resource;
 *   - 404 on a studio path → not found (the route answers `404 not_found`);
 *   - any other status, a 5xx, a body that is not JSON or breaks the schema → `502 bad_gateway`;
 *   - refused, reset, or no answer within the call's deadline → `503 unavailable`.
 * Reads are retried (a bounded number of times, within the same deadline) when the failure
 * happened before the upstream could act on them; writes never are.
 */
export interface UpstreamOptions {
  readonly url: string
  /** Deadline of one call, retries included. */
  readonly timeoutMs: number
  /** Extra attempts for a read that was refused, reset, or answered 502 / 503 / 504. */
  readonly readRetries?: number
  /** Keep-alive connections to the upstream, at most. */
  readonly connections?: number
}

const MAX_RESPONSE_BYTES = 1024 * 1024
const RETRY_BACKOFF_MS = 25
const USER_AGENT = 'studio-gateway'
/** Positions of upstream pages carry this prefix, so a cursor of the SQL store is refused here (and the reverse). */
const POSITION_PREFIX = 'u:'

/** Our own deadline, told apart from the socket errors undici reports. */
class UpstreamTimeout extends Error {
  constructor(ms: number) {
    super(`no complete answer within ${ms} ms`)
    this.name = 'UpstreamTimeout'
  }
}

/** Socket failures after which the upstream cannot have acted on the request: a read may be retried. */
const RETRYABLE_FAILURES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET'])
const RETRYABLE_STATUSES = new Set([502, 503, 504])

const UNREACHABLE = new Set([
  ...RETRYABLE_FAILURES,
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
])

/** The upstream answered, but not with HTTP we can read. */
const MALFORMED = new Set([
  'UND_ERR_RES_EXCEEDED_MAX_SIZE',
  'UND_ERR_HEADERS_OVERFLOW',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_INFO',
])

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i

const unreachable = (cause: unknown) =>
  new UpstreamUnavailable('the upstream studio service is unreachable', cause, false)
const tooSlow = (cause: unknown) =>
  new UpstreamUnavailable('the upstream studio service did not answer in time', cause, true)
const unexpected = (what: string, cause: unknown) => new UpstreamBrokeContract(what, cause)

interface Answer {
  readonly status: number
  readonly contentType: string
  readonly text: string
}

interface Call<T> {
  readonly method: 'GET' | 'POST'
  readonly path: string
  readonly body?: unknown
  /** What a 200 must hold. */
  readonly validate: (value: unknown) => T
  /** A 404 means "no such studio" on studio paths; on the studios list it is a contract violation. */
  readonly missingOn404: boolean
}

function compile<S extends TSchema>(schema: S, name: string) {
  const checker = TypeCompiler.Compile(schema)
  return (value: unknown) => {
    if (checker.Check(value)) return value
    const first = checker.Errors(value).First()
    throw unexpected(
      'with a body that breaks its contract',
      new Error(`${name} at "${first?.path ?? ''}": ${first?.message ?? 'invalid'}`),
    )
  }
}

const checkStudio = compile(UpstreamStudio, 'Studio')
const checkStream = compile(UpstreamStream, 'Stream')
const checkStudioPage = compile(UpstreamStudioPage, 'StudioPage')
const checkSessionPage = compile(UpstreamSessionPage, 'SessionPage')

/** An answer that is well-formed but about something else than was asked. */
function mismatch(detail: string): UpstreamBrokeContract {
  return unexpected('with a body that breaks its contract', new Error(detail))
}

/** Times in our API are UTC with milliseconds, whatever offset the upstream writes. */
const utc = (time: string) => new Date(time).toISOString()

const toStudio = (studio: UpstreamStudio): Studio => ({
  id: studio.id,
  name: studio.name,
  createdAt: utc(studio.createdAt),
})

const toStream = (stream: UpstreamStream): Stream => ({
  studioId: stream.studioId,
  status: stream.status,
  title: stream.title,
  startedAt: stream.startedAt === null ? null : utc(stream.startedAt),
  updatedAt: utc(stream.updatedAt),
})

const toSession = (session: UpstreamSession): Session => ({
  id: session.id,
  studioId: session.studioId,
  title: session.title,
  startedAt: utc(session.startedAt),
  endedAt: utc(session.endedAt),
})

export function createUpstreamStudioService(options: UpstreamOptions) {
  const { timeoutMs, readRetries = 1 } = options
  const base = new URL(options.url)
  const prefix = base.pathname.replace(/\/+$/, '')
  const pool = new Pool(base.origin, {
    connections: options.connections ?? 64,
    connect: { timeout: timeoutMs },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    maxResponseSize: MAX_RESPONSE_BYTES,
  })

  async function send(ctx: CallContext, call: Call<unknown>, budgetMs: number): Promise<Answer> {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(new UpstreamTimeout(budgetMs)), budgetMs)
    try {
      const response = await pool.request({
        method: call.method,
        path: call.path,
        headers: {
          accept: 'application/json',
          'user-agent': USER_AGENT,
          [UPSTREAM_HEADERS.account]: ctx.accountId,
          [UPSTREAM_HEADERS.requestId]: ctx.requestId,
          ...(call.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: call.body === undefined ? null : JSON.stringify(call.body),
        signal: controller.signal,
      })
      const contentType = String(response.headers['content-type'] ?? '')
      if (response.statusCode !== 200) {
        await response.body.dump()
        return { status: response.statusCode, contentType, text: '' }
      }
      return { status: 200, contentType, text: await response.body.text() }
    } catch (error) {
      throw controller.signal.aborted ? controller.signal.reason : error
    } finally {
      clearTimeout(timer)
    }
  }

  /** One call within its deadline, reads retried; throws the envelope error its failure maps to. */
  async function request<T>(ctx: CallContext, call: Call<T>): Promise<T | undefined> {
    const deadline = Date.now() + timeoutMs
    const attempts = call.method === 'GET' ? 1 + readRetries : 1
    const describe = `${call.method} ${call.path}`
    for (let attempt = 1; ; attempt++) {
      const budget = deadline - Date.now()
      if (budget <= 0) throw tooSlow(new UpstreamTimeout(timeoutMs))
      let answer: Answer
      try {
        answer = await send(ctx, call, budget)
      } catch (error) {
        const code = (error as { code?: unknown }).code
        if (attempt < attempts && typeof code === 'string' && RETRYABLE_FAILURES.has(code)) {
          await pause(RETRY_BACKOFF_MS * attempt)
          continue
        }
        throw transportError(error, describe)
      }
      if (attempt < attempts && RETRYABLE_STATUSES.has(answer.status)) {
        await pause(RETRY_BACKOFF_MS * attempt)
        continue
      }
      return interpret(answer, call, describe)
    }
  }

  function interpret<T>(answer: Answer, call: Call<T>, describe: string): T | undefined {
    if (answer.status === 404 && call.missingOn404) return undefined
    if (answer.status !== 200) {
      throw unexpected('with an unexpected status', new Error(`${describe} answered ${answer.status}`))
    }
    if (!JSON_TYPE.test(answer.contentType)) {
      throw unexpected('with a body that is not JSON', new Error(`${describe}: content-type "${answer.contentType}"`))
    }
    let value: unknown
    try {
      value = JSON.parse(answer.text)
    } catch (error) {
      throw unexpected('with a body that is not JSON', error)
    }
    return call.validate(value)
  }

  const studioPath = (studioId: string) => `${prefix}/studios/${encodeURIComponent(studioId)}`

  function pageQuery(page: PageRequest): string {
    const query = new URLSearchParams({ limit: String(page.limit) })
    if (page.after !== undefined) {
      if (!page.after.startsWith(POSITION_PREFIX)) throw new BadPosition()
      query.set('after', page.after.slice(POSITION_PREFIX.length))
    }
    return query.toString()
  }

  function checkPageSize(size: number, page: PageRequest) {
    if (size > page.limit) throw mismatch(`a page of ${size} items for limit=${page.limit}`)
  }

  const nextPosition = (next: string | null) => (next === null ? null : POSITION_PREFIX + next)

  const service: StudioService = {
    async listStudios(ctx, page) {
      const answer = await request(ctx, {
        method: 'GET',
        path: `${prefix}/studios?${pageQuery(page)}`,
        validate: checkStudioPage,
        missingOn404: false,
      })
      // missingOn404 is false: an answer always comes back, or request() threw.
      const { data, next } = answer as UpstreamStudioPage
      checkPageSize(data.length, page)
      return { items: data.map(toStudio), next: nextPosition(next) }
    },

    async getStudio(ctx, studioId) {
      if (!UPSTREAM_STUDIO_ID.test(studioId)) return undefined
      const studio = await request(ctx, {
        method: 'GET',
        path: studioPath(studioId),
        validate: checkStudio,
        missingOn404: true,
      })
      if (studio === undefined) return undefined
      if (studio.id !== studioId) throw mismatch(`studio ${studio.id} for ${studioId}`)
      return toStudio(studio)
    },

    async getStream(ctx, studioId) {
      if (!UPSTREAM_STUDIO_ID.test(studioId)) return undefined
      return streamOf(
        studioId,
        await request(ctx, {
          method: 'GET',
          path: `${studioPath(studioId)}/stream`,
          validate: checkStream,
          missingOn404: true,
        }),
      )
    },

    async listSessions(ctx, studioId, page) {
      if (!UPSTREAM_STUDIO_ID.test(studioId)) return undefined
      const answer = await request(ctx, {
        method: 'GET',
        path: `${studioPath(studioId)}/sessions?${pageQuery(page)}`,
        validate: checkSessionPage,
        missingOn404: true,
      })
      if (answer === undefined) return undefined
      checkPageSize(answer.data.length, page)
      const foreign = answer.data.find((session) => session.studioId !== studioId)
      if (foreign) throw mismatch(`session ${foreign.id} of studio ${foreign.studioId} for ${studioId}`)
      return { items: answer.data.map(toSession), next: nextPosition(answer.next) }
    },

    async goLive(ctx, studioId, { title }) {
      if (!UPSTREAM_STUDIO_ID.test(studioId)) return undefined
      const stream = await request(ctx, {
        method: 'POST',
        path: `${studioPath(studioId)}/stream/go-live`,
        body: { title },
        validate: checkStream,
        missingOn404: true,
      })
      return streamOf(studioId, stream, 'live')
    },

    async goOffline(ctx, studioId) {
      if (!UPSTREAM_STUDIO_ID.test(studioId)) return undefined
      const stream = await request(ctx, {
        method: 'POST',
        path: `${studioPath(studioId)}/stream/go-offline`,
        body: {},
        validate: checkStream,
        missingOn404: true,
      })
      return streamOf(studioId, stream, 'offline')
    },
  }

  return {
    ...service,

    /** Readiness: the upstream answers GET /health with a 2xx. Errors name no URL. */
    async ping(): Promise<void> {
      let status: number
      try {
        const response = await pool.request({
          method: 'GET',
          path: `${prefix}/health`,
          headers: { 'user-agent': USER_AGENT },
          signal: AbortSignal.timeout(timeoutMs),
        })
        status = response.statusCode
        await response.body.dump()
      } catch {
        throw new Error('the upstream studio service is unreachable')
      }
      if (status < 200 || status > 299) throw new Error(`the upstream studio service answered ${status} to GET /health`)
    },

    /** Closes the keep-alive connections once in-flight calls are done. */
    async close(): Promise<void> {
      await pool.close()
    },
  }
}

export type UpstreamStudioService = ReturnType<typeof createUpstreamStudioService>

function streamOf(studioId: string, stream: UpstreamStream | undefined, expected?: Stream['status']) {
  if (stream === undefined) return undefined
  if (stream.studioId !== studioId) throw mismatch(`the stream of ${stream.studioId} for ${studioId}`)
  if (expected !== undefined && stream.status !== expected) {
    throw mismatch(`status ${stream.status} after going ${expected}`)
  }
  return toStream(stream)
}

function transportError(error: unknown, describe: string): unknown {
  if (error instanceof UpstreamTimeout) return tooSlow(new Error(`${describe}: ${error.message}`))
  const { code, name } = error as { code?: unknown; name?: unknown }
  // undici's parser errors do not always carry a code.
  if (name === 'HTTPParserError') return unexpected('with a response that is not valid HTTP', error)
  if (typeof code !== 'string') return error
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return tooSlow(error)
  }
  if (UNREACHABLE.has(code)) return unreachable(error)
  if (MALFORMED.has(code)) return unexpected('with a response that is not valid HTTP', error)
  return error
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
