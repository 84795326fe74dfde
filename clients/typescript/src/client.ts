import {
  type OperationId,
  StudioGatewayError,
  type StudioGatewayErrorCode,
  type StudioGatewayErrorInit,
} from './errors.js'
import type { components, operations, paths } from './openapi.generated.js'
import { type RateLimitState, rateLimitOf } from './rate-limit.js'
import {
  type Clock,
  checkRetryOptions,
  decideRetry,
  defaultRetryOptions,
  type GiveUpReason,
  parseRetryAfter,
  type RetryOptions,
  systemClock,
} from './retry.js'

type Schemas = components['schemas']
export type Studio = Schemas['Studio']
export type Stream = Schemas['Stream']
export type Session = Schemas['Session']
export type StudioList = Schemas['StudioList']
export type SessionList = Schemas['SessionList']
export type ApiKey = Schemas['ApiKey']
/** A key of the account as the key API shows it (never its secret). */
export type ApiKeyDetails = Schemas['ApiKeyDetails']
/** A key just created or rolled, with its secret: the only time the secret is shown. */
export type NewApiKey = Schemas['NewApiKey']
export type ApiKeyList = Schemas['ApiKeyList']
export type Scope = Schemas['Scope']
export type ErrorEnvelope = Schemas['ErrorEnvelope']

type Json<R> = R extends { content: { 'application/json': infer B } } ? B : never
/** The success body of an operation (its 201, else its 200), as openapi.yaml declares it. */
type Ok<Op extends OperationId> = operations[Op]['responses'] extends { 201: infer R }
  ? Json<R>
  : operations[Op]['responses'] extends { 200: infer R }
    ? Json<R>
    : never

export type ListStudiosQuery = NonNullable<operations['listStudios']['parameters']['query']>
export type ListSessionsQuery = NonNullable<operations['listSessions']['parameters']['query']>
/** The optional body of go-live. */
export type GoLiveInput = NonNullable<NonNullable<operations['goLive']['requestBody']>['content']['application/json']>
export type ListKeysQuery = NonNullable<operations['listKeys']['parameters']['query']>
/** What a new key is made of: a name, scopes (a subset of the calling key's), optional expiry and rate limits. */
export type CreateKeyInput = operations['createKey']['requestBody']['content']['application/json']
/** The optional body of a roll: `{ gracePeriod }` in seconds (default 86 400, 0 for at once). */
export type RollKeyInput = NonNullable<NonNullable<operations['rollKey']['requestBody']>['content']['application/json']>

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
/** The method and path under which openapi.yaml declares the operation `Op`. */
type RouteOf<Op extends OperationId> = {
  [P in keyof paths]: {
    [M in 'get' | 'post']: Equal<paths[P][M], operations[Op]> extends true ? { method: Uppercase<M>; path: P } : never
  }['get' | 'post']
}[keyof paths]

/**
 * Where each operation lives. The type check ties every entry to openapi.yaml's paths: a path or
 * method changed in the document without changing it here fails `tsc`.
 */
const routes = {
  listStudios: { method: 'GET', path: '/v1/studios' },
  getStudio: { method: 'GET', path: '/v1/studios/{studioId}' },
  getStream: { method: 'GET', path: '/v1/studios/{studioId}/stream' },
  listSessions: { method: 'GET', path: '/v1/studios/{studioId}/sessions' },
  goLive: { method: 'POST', path: '/v1/studios/{studioId}/stream/go-live' },
  goOffline: { method: 'POST', path: '/v1/studios/{studioId}/stream/go-offline' },
  getKey: { method: 'GET', path: '/v1/key' },
  createKey: { method: 'POST', path: '/v1/keys' },
  listKeys: { method: 'GET', path: '/v1/keys' },
  getKeyById: { method: 'GET', path: '/v1/keys/{keyId}' },
  rollKey: { method: 'POST', path: '/v1/keys/{keyId}/roll' },
  revokeKey: { method: 'POST', path: '/v1/keys/{keyId}/revoke' },
} as const satisfies { [Op in OperationId]: RouteOf<Op> }

/** What the gateway echoes as a request id (DESIGN: 1–128 of these characters). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export interface RequestIdContext {
  operation: OperationId
  /** From 1. */
  attempt: number
}

/** What the client reports to `onEvent`. It never carries the API key. */
export type ClientEvent =
  | {
      type: 'attempt'
      operation: OperationId
      attempt: number
      method: 'GET' | 'POST'
      /** Path and query, without the base URL. */
      path: string
      requestId: string | undefined
      idempotencyKey: string | undefined
    }
  | {
      type: 'success'
      operation: OperationId
      attempts: number
      status: number
      requestId: string | undefined
    }
  | {
      type: 'retry'
      operation: OperationId
      /** The attempt that failed. */
      attempt: number
      /** How long the client waits before the next attempt. */
      delayMs: number
      error: StudioGatewayError
    }
  | {
      type: 'give-up'
      operation: OperationId
      attempts: number
      reason: GiveUpReason
      /** The error the call throws. */
      error: StudioGatewayError
    }

export interface ClientOptions {
  /** The gateway's origin, optionally with a path prefix: `https://api.example.com`. */
  baseUrl: string
  /** `sk_live_…` (or a test key, `sk_test_…`), sent as `Authorization: Bearer`. Never logged, never put in an error or event. */
  apiKey: string
  retry?: RetryOptions
  /** Default deadline of a call, every attempt and wait included (ms). Default: none. */
  timeoutMs?: number
  /** Longest a single attempt may take, answer body included; then it counts as `timeout`. Default 30 000. */
  attemptTimeoutMs?: number
  /**
   * Send an `Idempotency-Key` with each go-live / go-offline (a UUID per call, the same on every
   * attempt of that call), which makes the write retryable. Default true. With false, writes are
   * never retried: a repeat could act twice.
   */
  idempotencyKeys?: boolean
  /**
   * Send an `X-Request-Id` of the client's on every attempt: `true` for a UUID per attempt, or a
   * generator. Default false (the gateway generates one). Either way the error's `requestId` is the
   * one the gateway used.
   */
  requestIds?: boolean | ((context: RequestIdContext) => string)
  /** Called on each attempt, success, scheduled retry and give-up. The client logs nothing itself. */
  onEvent?: (event: ClientEvent) => void
  /** Default: the global `fetch`. */
  fetch?: typeof fetch
  /** Default: the system clock and timers. */
  clock?: Clock
  /** The jitter's random source, a number in [0, 1). Default: Math.random. */
  random?: () => number
}

export interface CallOptions {
  /** Cancels the call: the attempt in flight and any wait between attempts. */
  signal?: AbortSignal
  /** The deadline of this call (ms), every attempt and wait included; overrides the client's. */
  timeoutMs?: number
  /**
   * This call's X-Request-Id: sent as is on the first attempt, with `.2`, `.3`… appended on the
   * next ones so each attempt has its own id sharing yours. Must be 1–128 of `[A-Za-z0-9._:-]`.
   */
  requestId?: string
  /**
   * Writes (POST) only: your own Idempotency-Key for this call (to repeat a write safely
   * across process restarts), or false to send none (and not retry). Default: the client's setting.
   */
  idempotencyKey?: string | false
}

interface Request<Op extends OperationId = OperationId> {
  operation: Op
  studioId?: string
  keyId?: string
  query?: Record<string, string | number | undefined>
  body?: unknown
  /** A list answer must have `data` and `nextCursor`: pagination depends on them. */
  list?: boolean
}

type Outcome =
  | { ok: true; value: unknown; status: number; requestId: string | undefined; rateLimit: RateLimitState | undefined }
  | { ok: false; error: StudioGatewayError }

/**
 * The Studio Gateway /v1 API, one method per operation, with the spec's error handling built in:
 * every failure is a `StudioGatewayError`; transient ones are retried as the spec says.
 */
export class StudioGatewayClient {
  readonly #baseUrl: string
  readonly #apiKey: string
  readonly #retry: Required<RetryOptions>
  readonly #timeoutMs: number | undefined
  readonly #attemptTimeoutMs: number
  readonly #idempotencyKeys: boolean
  readonly #requestIds: ((context: RequestIdContext) => string) | undefined
  readonly #onEvent: ((event: ClientEvent) => void) | undefined
  readonly #fetch: typeof fetch
  readonly #clock: Clock
  readonly #random: () => number
  #rateLimit: RateLimitState | undefined

  /**
   * The rate-limit state the last answer showed (the policy that applied, requests left, when more
   * quota is available): pace yourself before a 429. Undefined before the first answer.
   */
  get rateLimit(): RateLimitState | undefined {
    return this.#rateLimit
  }

  /** Every studio of the account, page after page. */
  readonly studios = {
    /** `for await (const studio of client.studios.all())`: follows `nextCursor` to the end. */
    all: (query: Omit<ListStudiosQuery, 'cursor'> = {}, options: CallOptions = {}): AsyncGenerator<Studio> =>
      this.#everyItem('listStudios', (cursor) => this.listStudios({ ...query, cursor }, options)),
  }

  /** Every past session of a studio, page after page. */
  readonly sessions = {
    /** `for await (const session of client.sessions.all(studioId))`: newest first, to the end. */
    all: (
      studioId: string,
      query: Omit<ListSessionsQuery, 'cursor'> = {},
      options: CallOptions = {},
    ): AsyncGenerator<Session> =>
      this.#everyItem('listSessions', (cursor) => this.listSessions(studioId, { ...query, cursor }, options)),
  }

  /** Every key of the account, page after page. */
  readonly keys = {
    /** `for await (const key of client.keys.all())`: oldest first, to the end. */
    all: (query: Omit<ListKeysQuery, 'cursor'> = {}, options: CallOptions = {}): AsyncGenerator<ApiKeyDetails> =>
      this.#everyItem('listKeys', (cursor) => this.listKeys({ ...query, cursor }, options)),
  }

  constructor(options: ClientOptions) {
    const base = new URL(options.baseUrl)
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new TypeError('baseUrl must be an http: or https: URL')
    }
    this.#baseUrl = base.href.replace(/\/+$/, '')
    // Printable ASCII without spaces: anything else cannot be a key and would break the header.
    if (typeof options.apiKey !== 'string' || !/^[\x21-\x7e]+$/.test(options.apiKey)) {
      throw new TypeError('apiKey must be a non-empty string of printable characters (sk_live_…)')
    }
    this.#apiKey = options.apiKey
    this.#retry = { ...defaultRetryOptions, ...options.retry }
    checkRetryOptions(this.#retry)
    this.#timeoutMs = checkTimeout('timeoutMs', options.timeoutMs)
    this.#attemptTimeoutMs = checkTimeout('attemptTimeoutMs', options.attemptTimeoutMs) ?? 30_000
    this.#idempotencyKeys = options.idempotencyKeys ?? true
    this.#requestIds = options.requestIds === true ? () => crypto.randomUUID() : options.requestIds || undefined
    this.#onEvent = options.onEvent
    this.#fetch = options.fetch ?? globalThis.fetch
    this.#clock = options.clock ?? systemClock
    this.#random = options.random ?? Math.random
  }

  /** A page of the account's studios, oldest first. Scope `studio:read`. */
  listStudios(query: ListStudiosQuery = {}, options?: CallOptions): Promise<StudioList> {
    return this.#call({ operation: 'listStudios', query, list: true }, options)
  }

  /** One studio. Scope `studio:read`. */
  getStudio(studioId: string, options?: CallOptions): Promise<Studio> {
    return this.#call({ operation: 'getStudio', studioId }, options)
  }

  /** The live stream of a studio. Scope `stream:read`. */
  getStream(studioId: string, options?: CallOptions): Promise<Stream> {
    return this.#call({ operation: 'getStream', studioId }, options)
  }

  /** A page of a studio's past sessions, newest first. Scope `stream:read`. */
  listSessions(studioId: string, query: ListSessionsQuery = {}, options?: CallOptions): Promise<SessionList> {
    return this.#call({ operation: 'listSessions', studioId, query, list: true }, options)
  }

  /** Starts a broadcast (idempotent: while live, the unchanged stream). Scope `stream:golive`. */
  goLive(studioId: string, input?: GoLiveInput, options?: CallOptions): Promise<Stream> {
    return this.#call({ operation: 'goLive', studioId, body: input }, options)
  }

  /** Ends the broadcast (idempotent: while offline, the unchanged stream). Scope `stream:golive`. */
  goOffline(studioId: string, options?: CallOptions): Promise<Stream> {
    return this.#call({ operation: 'goOffline', studioId }, options)
  }

  /** The calling key (never its secret). Any valid key. */
  getKey(options?: CallOptions): Promise<ApiKey> {
    return this.#call({ operation: 'getKey' }, options)
  }

  /**
   * Creates a key of the account and answers it with its secret, the only time it is shown. Scope
   * `keys:write`; the new key's scopes must be among the calling key's. Retried safely (with an
   * Idempotency-Key, a retry gets the same key and secret).
   */
  createKey(input: CreateKeyInput, options?: CallOptions): Promise<NewApiKey> {
    return this.#call({ operation: 'createKey', body: input }, options)
  }

  /** A page of the account's keys, oldest first (never their secrets). Scope `keys:read`. */
  listKeys(query: ListKeysQuery = {}, options?: CallOptions): Promise<ApiKeyList> {
    return this.#call({ operation: 'listKeys', query, list: true }, options)
  }

  /** One key of the account (never its secret). Scope `keys:read`. */
  getKeyById(keyId: string, options?: CallOptions): Promise<ApiKeyDetails> {
    return this.#call({ operation: 'getKeyById', keyId }, options)
  }

  /**
   * A successor of the key with a new secret (answered once); the old secret keeps working for the
   * grace period (`gracePeriod` seconds, 24 h by default), then expires. Scope `keys:write`.
   */
  rollKey(keyId: string, input?: RollKeyInput, options?: CallOptions): Promise<NewApiKey> {
    return this.#call({ operation: 'rollKey', keyId, body: input }, options)
  }

  /** Revokes the key: refused from now on. Scope `keys:write`. */
  revokeKey(keyId: string, options?: CallOptions): Promise<ApiKeyDetails> {
    return this.#call({ operation: 'revokeKey', keyId }, options)
  }

  async *#everyItem<T>(
    operation: OperationId,
    page: (cursor: string | undefined) => Promise<{ data: T[]; nextCursor: string | null }>,
  ) {
    let cursor: string | undefined
    for (;;) {
      const { data, nextCursor } = await page(cursor)
      yield* data
      if (nextCursor === null) return
      // A cursor that does not move would loop forever: a broken proxy or gateway, not the end.
      if (nextCursor === cursor) {
        throw new StudioGatewayError({
          operation,
          code: 'unexpected_response',
          message: 'the list answered the same nextCursor twice: stopping instead of looping',
          attempts: 1,
        })
      }
      cursor = nextCursor
    }
  }

  async #call<Op extends OperationId>(request: Request<Op>, options: CallOptions = {}): Promise<Ok<Op>> {
    const { operation } = request
    const route = routes[operation]
    const url = this.#urlOf(route.path, request)
    const timeoutMs = checkTimeout('timeoutMs', options.timeoutMs) ?? this.#timeoutMs
    const deadline = timeoutMs === undefined ? undefined : this.#clock.now() + timeoutMs
    const idempotencyKey = route.method === 'POST' ? this.#idempotencyKeyOf(options) : undefined
    // Checked for the longest id it yields, so a bad one fails before anything is sent.
    if (options.requestId !== undefined) requestIdOf(options.requestId, Math.max(1, this.#retry.maxAttempts))
    const body = request.body === undefined ? undefined : JSON.stringify(request.body)

    for (let attempt = 1; ; attempt++) {
      if (options.signal?.aborted) {
        throw this.#giveUp(attempt - 1, 'aborted', this.#aborted(operation, attempt - 1, options.signal))
      }
      const requestId =
        options.requestId === undefined
          ? this.#requestIds && checkRequestId(this.#requestIds({ operation, attempt }))
          : requestIdOf(options.requestId, attempt)
      const headers: Record<string, string> = { authorization: `Bearer ${this.#apiKey}`, accept: 'application/json' }
      if (body !== undefined) headers['content-type'] = 'application/json'
      if (requestId !== undefined) headers['x-request-id'] = requestId
      if (idempotencyKey !== undefined) headers['idempotency-key'] = idempotencyKey
      this.#emit({
        type: 'attempt',
        operation,
        attempt,
        method: route.method,
        path: url.slice(this.#baseUrl.length),
        requestId,
        idempotencyKey,
      })

      const outcome = await this.#attempt(
        request,
        attempt,
        { url, method: route.method, headers, body },
        {
          signal: options.signal,
          deadline,
          requestId,
        },
      )
      if (outcome.ok) {
        this.#emit({
          type: 'success',
          operation,
          attempts: attempt,
          status: outcome.status,
          requestId: outcome.requestId,
        })
        return outcome.value as Ok<Op>
      }
      const { error } = outcome
      if (error.code === 'aborted') throw this.#giveUp(attempt, 'aborted', error)
      const decision = decideRetry(error, {
        attempt,
        repeatable: route.method === 'GET' || idempotencyKey !== undefined,
        deadline,
        now: this.#clock.now(),
        options: this.#retry,
        random: this.#random,
      })
      if (!decision.retry) throw this.#giveUp(attempt, decision.reason, error)
      this.#emit({ type: 'retry', operation, attempt, delayMs: decision.delayMs, error })
      if (!(await this.#wait(decision.delayMs, options.signal))) {
        throw this.#giveUp(attempt, 'aborted', this.#aborted(operation, attempt, options.signal))
      }
    }
  }

  /** One HTTP exchange, bounded by the attempt timeout, the call's deadline and the caller's signal. */
  async #attempt(
    request: Request,
    attempt: number,
    init: { url: string; method: string; headers: Record<string, string>; body: string | undefined },
    bounds: { signal: AbortSignal | undefined; deadline: number | undefined; requestId: string | undefined },
  ): Promise<Outcome> {
    const { operation } = request
    const controller = new AbortController()
    let stoppedBy: 'caller' | 'attempt-timeout' | 'deadline' | undefined
    const stop = (by: NonNullable<typeof stoppedBy>) => () => {
      stoppedBy ??= by
      controller.abort()
    }
    const onCallerAbort = stop('caller')
    bounds.signal?.addEventListener('abort', onCallerAbort, { once: true })
    // Aborted since the check before this attempt (by the `attempt` hook, say): an event will not come.
    if (bounds.signal?.aborted) onCallerAbort()
    const timers = [this.#clock.setTimeout(stop('attempt-timeout'), this.#attemptTimeoutMs)]
    if (bounds.deadline !== undefined) {
      timers.push(this.#clock.setTimeout(stop('deadline'), Math.max(0, bounds.deadline - this.#clock.now())))
    }
    const fail = (init: Omit<StudioGatewayErrorInit, 'operation' | 'attempts'>): Outcome => ({
      ok: false,
      error: new StudioGatewayError({ operation, attempts: attempt, ...init }),
    })
    try {
      let response: Response
      let text: string
      try {
        response = await this.#fetch(init.url, {
          method: init.method,
          headers: init.headers,
          body: init.body,
          signal: controller.signal,
          // The API never redirects; following one could send the key to another origin.
          redirect: 'manual',
        })
        text = await response.text()
      } catch (cause) {
        if (stoppedBy === 'caller') return { ok: false, error: this.#aborted(operation, attempt, bounds.signal) }
        if (stoppedBy !== undefined) {
          const message =
            stoppedBy === 'deadline'
              ? 'the call did not complete within its timeoutMs'
              : `the attempt got no complete answer within attemptTimeoutMs (${this.#attemptTimeoutMs} ms)`
          return fail({ code: 'timeout', message, requestId: bounds.requestId, cause })
        }
        return fail({
          code: 'network_error',
          message: `no answer from the gateway: ${describeTransportError(cause)}`,
          requestId: bounds.requestId,
          cause,
        })
      }
      const requestId = response.headers.get('x-request-id') ?? bounds.requestId
      const rateLimit = rateLimitOf(response.headers)
      this.#rateLimit = rateLimit ?? this.#rateLimit
      // Retry-After, or else the structured RateLimit field's wait on a 429 (the same value from this gateway).
      const retryAfter =
        parseRetryAfter(response.headers.get('retry-after'), this.#clock.now()) ??
        (response.status === 429 ? rateLimit?.resetSeconds : undefined)
      const contentType = response.headers.get('content-type') ?? 'no content type'
      if (response.status >= 200 && response.status < 300) {
        const value = parseJson(text)
        if (isObject(value) && (!request.list || isList(value))) {
          return { ok: true, value, status: response.status, requestId, rateLimit }
        }
        return fail({
          code: 'unexpected_response',
          status: response.status,
          message: `the gateway answered ${response.status} (${contentType}) with a body that is not the documented ${operation} answer`,
          requestId,
        })
      }
      const envelope = envelopeOf(parseJson(text))
      if (envelope === undefined) {
        const location = response.headers.get('location')
        return fail({
          code: 'unexpected_response',
          status: response.status,
          message:
            response.status >= 300 && response.status < 400
              ? `the gateway answered a redirect (${response.status}${location ? ` to ${location}` : ''}): check baseUrl`
              : `the gateway answered ${response.status} (${contentType}) without the error envelope: a proxy in between?`,
          requestId,
          retryAfter,
          rateLimit,
        })
      }
      return fail({
        code: envelope.code,
        status: response.status,
        message: envelope.message,
        requestId: envelope.requestId,
        requiredScope: envelope.requiredScope,
        retryAfter,
        rateLimit,
      })
    } finally {
      for (const timer of timers) this.#clock.clearTimeout(timer)
      bounds.signal?.removeEventListener('abort', onCallerAbort)
    }
  }

  /** Waits `ms` on the clock; false when the caller's signal fired first. */
  #wait(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false)
    return new Promise((resolve) => {
      const onAbort = () => {
        this.#clock.clearTimeout(timer)
        resolve(false)
      }
      const timer = this.#clock.setTimeout(() => {
        signal?.removeEventListener('abort', onAbort)
        resolve(true)
      }, ms)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  #aborted(operation: OperationId, attempts: number, signal: AbortSignal | undefined) {
    return new StudioGatewayError({
      operation,
      code: 'aborted',
      message: `the call was aborted${attempts === 0 ? ' before its first attempt' : ` after ${attempts} attempt${attempts === 1 ? '' : 's'}`}`,
      attempts,
      cause: signal?.reason,
    })
  }

  #giveUp(attempts: number, reason: GiveUpReason, error: StudioGatewayError): StudioGatewayError {
    this.#emit({ type: 'give-up', operation: error.operation, attempts, reason, error })
    return error
  }

  /** A hook that throws must not change the outcome of the call it observes. */
  #emit(event: ClientEvent) {
    try {
      this.#onEvent?.(event)
    } catch {}
  }

  #idempotencyKeyOf(options: CallOptions): string | undefined {
    if (options.idempotencyKey === false) return undefined
    if (options.idempotencyKey !== undefined) {
      if (!/^[\x21-\x7e]{1,255}$/.test(options.idempotencyKey)) {
        throw new TypeError('idempotencyKey must be 1–255 printable characters without spaces')
      }
      return options.idempotencyKey
    }
    return this.#idempotencyKeys ? crypto.randomUUID() : undefined
  }

  #urlOf(path: string, request: Request): string {
    const resolved = path.replace(/\{(studioId|keyId)\}/g, (_, name: 'studioId' | 'keyId') => {
      const id = request[name]
      // `.` and `..` would be read as dot segments by the URL parser and reach another route.
      if (typeof id !== 'string' || id === '' || id === '.' || id === '..') {
        throw new TypeError(`${name} must be a non-empty id (${name === 'studioId' ? 'std_' : 'key_'}…)`)
      }
      return encodeURIComponent(id)
    })
    const search = new URLSearchParams()
    for (const [name, value] of Object.entries(request.query ?? {})) {
      if (value !== undefined) search.set(name, String(value))
    }
    const query = search.toString()
    return `${this.#baseUrl}${resolved}${query === '' ? '' : `?${query}`}`
  }
}

function checkTimeout(name: string, value: number | undefined): number | undefined {
  if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
    throw new RangeError(`${name} must be a positive number of milliseconds`)
  }
  return value
}

function checkRequestId(id: string): string {
  if (!REQUEST_ID.test(id))
    throw new TypeError('a request id must be 1–128 of [A-Za-z0-9._:-] (the gateway echoes no other)')
  return id
}

/** The caller's id on the first attempt, then `id.2`, `id.3`…: one id per attempt, all traceable to the call. */
function requestIdOf(id: string, attempt: number): string {
  return checkRequestId(attempt === 1 ? id : `${id}.${attempt}`)
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isList(value: Record<string, unknown>): boolean {
  return Array.isArray(value.data) && (value.nextCursor === null || typeof value.nextCursor === 'string')
}

/** The envelope's fields; `code` may be one this client does not know yet. */
interface ReceivedError {
  code: StudioGatewayErrorCode
  message: string
  requestId: string
  requiredScope?: string
}

/** The spec's envelope, or undefined for anything else (so it becomes `unexpected_response`). */
function envelopeOf(value: unknown): ReceivedError | undefined {
  if (!isObject(value) || !isObject(value.error)) return undefined
  const { code, message, requestId, requiredScope } = value.error
  if (typeof code !== 'string' || code === '' || typeof message !== 'string' || typeof requestId !== 'string') {
    return undefined
  }
  return {
    code,
    message,
    requestId,
    ...(typeof requiredScope === 'string' ? { requiredScope } : {}),
  }
}

/** Node's fetch rejects with "fetch failed" and the socket error as its cause: name the cause. */
function describeTransportError(error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error
  if (!(cause instanceof Error)) return String(cause)
  // An AggregateError (every address of a host refused) has a code and an empty message.
  const code = (cause as { code?: unknown }).code
  const parts = [typeof code === 'string' && !cause.message.includes(code) ? code : '', cause.message]
  return parts.filter((part) => part !== '').join(': ') || cause.name
}
