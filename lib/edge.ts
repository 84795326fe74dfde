import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeader,
  type OutgoingHttpHeaders,
  type Server,
  ServerResponse,
} from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { EdgeBounds } from '../config.js'
import { descriptorExhaustion, isDescriptorExhaustion, REFUSAL_BAND } from './descriptors.js'
import { type ApiError, type ErrorCode, invalidRequest, rawErrorAnswer } from './errors.js'
import { newRequestId } from './ids.js'

/**
 * The gateway's connections, below Fastify: the HTTP server (Fastify's `serverFactory`), the
 * bounds of docs/edge.md, and every answer Node's HTTP layer would otherwise give by itself.
 *
 * - Time: HEADERS_TIMEOUT and REQUEST_TIMEOUT (Node's `headersTimeout` / `requestTimeout`, checked
 *   every CHECK_INTERVAL), KEEP_ALIVE_TIMEOUT between requests, and no traffic at all for
 *   REQUEST_TIMEOUT (+ 2 checks) while a request is served (a client that stops reading its answer:
 *   the edge's own check, every CHECK_INTERVAL too).
 * - Lingering close: a connection closes only after its last answer is sent, then what the
 *   client still sends is read and thrown away for LINGER_TIMEOUT / LINGER_MAX_KB before the
 *   socket is destroyed, so a client still uploading reads the answer instead of a reset.
 * - Capacity: MAX_CONNECTIONS served at once; the next REFUSAL_BAND get 503 unavailable (see
 *   pipeline/edge.ts), any more are refused by Node before they cost more than the accept.
 * - Requests the HTTP parser rejects, or that run out of time, get the envelope: after the
 *   answers of the requests pipelined before them, in order.
 * - `Expect` other than 100-continue and CONNECT reach Fastify (Node answers them itself:
 *   a bare 417, a closed socket), so they get the envelope like any request.
 * - Out of descriptors on accept: idle connections are closed, answers close their connection
 *   for a second, and the server keeps accepting when descriptors come back.
 */

/** Node checks the header and request bounds this often, at least (its default, 30 s, would let a bound run 30 s late). */
const CHECK_INTERVAL_MS = 1000
/** After running out of descriptors, answers close their connection for this long. */
const PRESSURE_MS = 1000
/** How often at most a descriptor shortage is logged: during one, every accept fails. */
const LOG_INTERVAL_MS = 10_000

/** What the edge keeps of each connection. */
interface Connection {
  /** Accepted past MAX_CONNECTIONS: every request on it is answered 503 unavailable. */
  readonly overCapacity: boolean
  /** Requests parsed on this connection whose response has not closed. */
  inFlight: number
  /** The response to the last request parsed on it: the only request whose body can still be arriving. */
  latest: ServerResponse | undefined
  /** Run once no request is in flight. */
  whenIdle: Array<() => void>
  /** The HTTP parser's complaint about this connection has been answered (it may repeat it). */
  refused: boolean
  /** Set once its last answer is out: the socket is destroyed past this byte count, or at the timer. */
  linger: { readonly maxBytesRead: number; readonly timer: NodeJS.Timeout } | undefined
  /** Bytes read and bytes whose write completed, at the stall check that last saw them change. */
  traffic: number
  /** When the stall check last saw traffic while a request was in flight; 0 while none is. */
  trafficSeenAt: number
}

const kConnection = Symbol('studio-gateway.connection')
type EdgeSocket = Socket & { [kConnection]?: Connection }

const connectionOf = (socket: Socket | null | undefined): Connection | undefined =>
  socket ? (socket as EdgeSocket)[kConnection] : undefined

export interface EdgeOptions {
  readonly bounds: EdgeBounds
  readonly log: FastifyBaseLogger
  /** Where the edge's metrics are registered. */
  readonly registry: Registry
  /** An error envelope was sent from below Fastify (studio_gateway_errors_total). */
  readonly onErrorSent: (code: ErrorCode) => void
}

export type Edge = ReturnType<typeof createEdge>

export function createEdge({ bounds, log, registry, onErrorSent }: EdgeOptions) {
  /** Every open connection (their count is the one MAX_CONNECTIONS bounds), for the stall check too. */
  const sockets = new Set<EdgeSocket>()
  let pressureUntil = 0
  let lastShortageLog = 0
  const metrics = edgeMetrics(registry, () => sockets.size)

  /** Node calls `socket.destroySoon()` after an answer that closes the connection: it lingers instead. */
  function lingerInsteadOfDestroy(this: Socket) {
    lingeringClose(this)
  }

  /**
   * Ends the connection after what is queued (FIN), reads and discards what the client still
   * sends, up to LINGER_MAX_KB, and destroys the socket at LINGER_TIMEOUT, or once the client
   * closes its side. Closing with unread bytes resets the connection, and a reset can discard the
   * answer from the client's receive buffer before the client reads it: hence reading, and past
   * the byte budget, no longer reading rather than resetting early.
   */
  function lingeringClose(socket: Socket) {
    const connection = connectionOf(socket)
    if (socket.destroyed || connection === undefined || connection.linger !== undefined) return
    // Not unref'd: a closing server waits for it (at most LINGER_TIMEOUT), like for any connection.
    const timer = setTimeout(() => socket.destroy(), bounds.lingerTimeoutMs)
    connection.linger = { maxBytesRead: socket.bytesRead + bounds.lingerMaxBytes, timer }
    // The linger's own timer bounds it now (the stall check passes over a lingering connection).
    socket.end()
    // What still arrives: the rest of the body of the last request (through Node's parser), or
    // raw bytes once the parser is gone (after CONNECT). Either way it is counted, and dropped.
    const latest = connection.latest?.req
    if (latest !== undefined && !latest.complete) latest.on('data', checkLingerBudget).resume()
    socket.on('data', checkLingerBudget)
  }

  function checkLingerBudget(this: IncomingMessage | Socket) {
    const socket = 'socket' in this ? this.socket : this
    const linger = connectionOf(socket)?.linger
    if (!socket || !linger || socket.bytesRead <= linger.maxBytesRead) return
    // Enough read: stop reading (the client's sending stalls); the timer closes the socket.
    this.removeListener('data', checkLingerBudget)
    this.pause()
    socket.pause()
  }

  function onConnection(socket: Socket) {
    sockets.add(socket)
    const connection: Connection = {
      overCapacity: sockets.size > bounds.maxConnections,
      inFlight: 0,
      latest: undefined,
      whenIdle: [],
      refused: false,
      linger: undefined,
      traffic: 0,
      trafficSeenAt: 0,
    }
    ;(socket as EdgeSocket)[kConnection] = connection
    if (connection.overCapacity) metrics.refused.inc({ reason: 'over_capacity' })
    socket.destroySoon = lingerInsteadOfDestroy
    socket.once('close', () => {
      sockets.delete(socket)
      if (connection.linger) clearTimeout(connection.linger.timer)
    })
  }

  function responseClosed(this: ServerResponse) {
    const connection = connectionOf(this.req.socket)
    if (connection === undefined) return
    connection.inFlight--
    if (connection.inFlight === 0 && connection.whenIdle.length > 0) {
      for (const run of connection.whenIdle.splice(0)) run()
    }
  }

  /** Wraps Fastify's handler: counts each connection's requests in flight; serves none after its last answer. */
  function track(handler: (req: IncomingMessage, res: ServerResponse) => void) {
    return function edgeHandler(req: IncomingMessage, res: ServerResponse) {
      const connection = connectionOf(req.socket)
      if (connection !== undefined) {
        if (connection.linger !== undefined || connection.refused) {
          // Pipelined behind an answer that closed the connection (or a request the parser
          // refused): never served, its bytes count against the lingering budget.
          req.on('data', checkLingerBudget).resume()
          return
        }
        connection.inFlight++
        connection.latest = res
        // 'close' is emitted once; on() spares once()'s wrapper on every request.
        res.on('close', responseClosed)
      }
      handler(req, res)
    }
  }

  /** Whether the answer to this request must close its connection (sent with Connection: close). */
  function mustClose(req: IncomingMessage): boolean {
    // Answered before its body arrived: what follows is body, not a next request.
    if (!req.complete && hasBody(req)) return true
    const connection = connectionOf(req.socket)
    // The clock is read only after a descriptor shortage (pressureUntil is 0 until one).
    return connection?.overCapacity === true || (pressureUntil !== 0 && Date.now() < pressureUntil)
  }

  /**
   * Every answer's head goes through writeHead (Fastify calls it, and Node's implicit head too):
   * the one place to close a connection that must not serve another request, with no hook per
   * request in Fastify.
   */
  class EdgeResponse extends ServerResponse {
    override writeHead(
      statusCode: number,
      reasonOrHeaders?: string | OutgoingHttpHeaders | OutgoingHttpHeader[],
      headers?: OutgoingHttpHeaders | OutgoingHttpHeader[],
    ): this {
      if (mustClose(this.req)) this.setHeader('connection', 'close')
      // Both of Node's forms pass through as given: Node tells a reason phrase from headers by its type.
      return super.writeHead(statusCode, reasonOrHeaders as string | undefined, headers)
    }
  }

  /**
   * Destroys each connection serving a request with no traffic either way for `stallMs`: a client
   * that stopped reading its answer (its bytes stay queued, the kernel's buffers full) or sends
   * nothing more while its request waits. Traffic is the bytes read plus the bytes whose write
   * completed, compared from one check to the next. Node's own per-socket inactivity timeout
   * (`server.setTimeout`) would do the same, but re-arms a timer on every read and write and
   * makes a new one for every request: this check costs nothing per request.
   */
  function destroyStalled(stallMs: number) {
    const now = Date.now()
    for (const socket of sockets) {
      const connection = socket[kConnection] as Connection
      if (connection.inFlight === 0 || connection.linger !== undefined || socket.destroyed) {
        connection.trafficSeenAt = 0
        continue
      }
      const traffic = socket.bytesRead + (socket.bytesWritten ?? 0) - socket.writableLength
      if (connection.trafficSeenAt === 0 || traffic !== connection.traffic) {
        connection.traffic = traffic
        connection.trafficSeenAt = now
      } else if (now - connection.trafficSeenAt >= stallMs) {
        metrics.stalled.inc()
        socket.destroy()
      }
    }
  }

  /** Fastify's `serverFactory`: the HTTP server with the edge's bounds and listeners. */
  function serverFactory(handler: (req: IncomingMessage, res: ServerResponse) => void): Server {
    const route = track(handler)
    const checkIntervalMs = Math.max(10, Math.min(CHECK_INTERVAL_MS, Math.floor(bounds.headersTimeoutMs / 4)))
    const server = createServer(
      {
        headersTimeout: bounds.headersTimeoutMs,
        requestTimeout: bounds.requestTimeoutMs,
        keepAliveTimeout: bounds.keepAliveTimeoutMs,
        connectionsCheckingInterval: checkIntervalMs,
        // A missing Host is answered by the gateway, in the envelope (pipeline/edge.ts), not by Node's bare 400.
        requireHostHeader: false,
        ServerResponse: EdgeResponse,
      },
      route,
    )
    // No traffic either way while a request is served (a client that stopped reading its answer);
    // later than the request bound, which answers a late request before this closes it unanswered.
    const stallMs = bounds.requestTimeoutMs + 2 * checkIntervalMs
    const stallCheck = setInterval(destroyStalled, checkIntervalMs, stallMs).unref()
    server.once('close', () => clearInterval(stallCheck))
    server.maxConnections = bounds.maxConnections + REFUSAL_BAND
    server.on('connection', onConnection)
    server.on('drop', () => metrics.refused.inc({ reason: 'limit' }))
    // Any Expect but 100-continue: served like any request; the gateway refuses it with 400.
    server.on('checkExpectation', route)
    server.on('connect', (req: IncomingMessage, socket: Socket) => {
      // Node hands CONNECT over as a bare socket: give it a response so the router answers it.
      const res = new EdgeResponse(req)
      res.shouldKeepAlive = false
      res.assignSocket(socket)
      res.once('finish', () => {
        res.detachSocket(socket)
        lingeringClose(socket)
      })
      route(req, res)
    })
    server.on('error', (error: NodeJS.ErrnoException) => {
      if (isDescriptorExhaustion(error)) {
        descriptorExhaustion.accept++
        shedForDescriptors()
        server.closeIdleConnections()
        return
      }
      // While listening is attempted, Fastify's listen() reports its errors; after, as before.
      if (server.listening) throw error
    })
    return server
  }

  function shedForDescriptors() {
    const now = Date.now()
    pressureUntil = now + PRESSURE_MS
    if (now - lastShortageLog >= LOG_INTERVAL_MS) {
      lastShortageLog = now
      log.warn(
        { openConnections: sockets.size, maxConnections: bounds.maxConnections },
        'out of file descriptors: closing idle connections and closing each connection after its answer',
      )
    }
  }

  /** Fastify's `clientErrorHandler`: what Node's HTTP parser refused, and requests past their time bound. */
  function clientErrorHandler(error: NodeJS.ErrnoException, socket: Socket) {
    const connection = connectionOf(socket)
    const latest = connection?.latest
    const midBody = latest !== undefined && !latest.req.complete
    // The client is gone: reset, or closed its side in the middle of a body (an abort, which the
    // body's reader reports as such: plugins/errors.ts). Nobody is left to read an answer.
    if (
      error.code === 'ECONNRESET' ||
      (error.code === 'HPE_INVALID_EOF_STATE' && midBody) ||
      socket.destroyed ||
      connection === undefined
    ) {
      socket.destroy()
      return
    }
    // Once closing, the parser may complain about what still arrives: it is only counted.
    if (connection.linger !== undefined) return checkLingerBudget.call(socket)
    if (connection.refused) return
    connection.refused = true
    const timedOut = error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    if (timedOut) metrics.timeouts.inc()
    log.debug({ code: error.code }, timedOut ? 'request timed out' : 'client error')

    if (latest !== undefined && midBody) {
      // The last request's headers were parsed, its body is late or broken: its own response answers.
      failBody(latest, timedOut ? timeoutError() : invalidRequest('the request body is malformed'))
      return
    }
    // The headers never parsed: answered after the requests pipelined before (their answers and
    // log lines come first), then the connection closes.
    const answer = () => {
      if (socket.destroyed || connectionOf(socket)?.linger !== undefined) return
      const message =
        error.code === 'HPE_HEADER_OVERFLOW'
          ? 'request headers are larger than the server accepts'
          : timedOut
            ? timeoutError().message
            : 'the HTTP request is malformed'
      socket.write(rawErrorAnswer(invalidRequest(message), newRequestId()))
      onErrorSent('invalid_request')
      lingeringClose(socket)
    }
    if (connection.inFlight === 0) answer()
    else connection.whenIdle.push(answer)
  }

  /**
   * The body of a request being served cannot complete. While Fastify reads it, the error reaches
   * its body parser as the stream's error: the answer is Fastify's 400 in the envelope (with the
   * request's id and its log line), closing the connection. A route that does not read the body
   * has answered, or will, with Connection: close (pipeline/edge.ts); the connection closes after it.
   */
  function failBody(res: ServerResponse, error: ApiError) {
    const { req } = res
    if (!res.headersSent && req.listenerCount('error') > 0) {
      req.emit('error', error)
      return
    }
    const socket = req.socket
    if (res.writableFinished) lingeringClose(socket)
    else res.once('finish', () => lingeringClose(socket))
  }

  const timeoutError = () =>
    invalidRequest(
      `the request was not received in time (headers within ${bounds.headersTimeoutMs} ms, the whole request within ${bounds.requestTimeoutMs} ms)`,
    )

  return {
    serverFactory,
    clientErrorHandler,
    /** Accepted past MAX_CONNECTIONS: its requests are answered 503 unavailable. */
    overCapacity(req: IncomingMessage): boolean {
      return connectionOf(req.socket)?.overCapacity === true
    },
    /** A client closed its connection before its request was complete. */
    clientAborted() {
      metrics.aborts.inc()
    },
    get openConnections() {
      return sockets.size
    },
  }
}

/** A request that announced a body (a bodiless one is complete as soon as its headers are). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

function edgeMetrics(registry: Registry, openConnections: () => number) {
  const prefix = 'studio_gateway_'
  new Gauge({
    name: `${prefix}connections_open`,
    help: 'Client connections open now (MAX_CONNECTIONS are served; past it, answered 503 or refused).',
    registers: [registry],
    collect() {
      this.set(openConnections())
    },
  })
  new Counter({
    name: `${prefix}descriptor_exhaustion_total`,
    help: 'Times the process found no file descriptor free (EMFILE / ENFILE), by where: accept, memory_sample, request, uncaught.',
    labelNames: ['site'],
    registers: [registry],
    collect() {
      this.reset()
      for (const [site, count] of Object.entries(descriptorExhaustion)) this.inc({ site }, count)
    },
  })
  const refused = new Counter({
    name: `${prefix}connections_refused_total`,
    help: 'Connections past MAX_CONNECTIONS: over_capacity (answered 503 unavailable) or limit (closed unanswered by Node).',
    labelNames: ['reason'],
    registers: [registry],
  })
  refused.inc({ reason: 'over_capacity' }, 0)
  refused.inc({ reason: 'limit' }, 0)
  return {
    refused,
    timeouts: new Counter({
      name: `${prefix}request_timeouts_total`,
      help: 'Requests whose headers or body did not arrive within HEADERS_TIMEOUT / REQUEST_TIMEOUT.',
      registers: [registry],
    }),
    stalled: new Counter({
      name: `${prefix}connections_stalled_total`,
      help: 'Connections destroyed for no traffic either way for REQUEST_TIMEOUT plus two bound checks (2 s) while a request was served (a client that stopped reading its answer).',
      registers: [registry],
    }),
    aborts: new Counter({
      name: `${prefix}client_aborts_total`,
      help: 'Requests whose client closed the connection before sending all of it (not an error of the gateway).',
      registers: [registry],
    }),
  }
}
