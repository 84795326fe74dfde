import { connect, type Socket } from 'node:net'

/**
 * Hostile clients for `npm run soak -- --hostile`, in a process of their own (forked by
 * bench/soak-hostile.ts) so they never share an event loop with the gateway or with the load
 * generator. It holds a set number of sockets of each kind against the gateway, opening a new one
 * whenever one is closed, and records how long each lived against the bound docs/edge.md gives
 * it. A client never closes a socket itself: after the gateway's FIN it writes a byte now and
 * then, so it learns (by a reset) when the gateway has let go of its side too.
 */

export type HostileKind = 'idle' | 'slow_headers' | 'drip_body_keyless' | 'drip_body_keyed' | 'idle_keep_alive'

export interface HostileStart {
  readonly type: 'start'
  readonly port: number
  /** A valid key (its own rate limit, so its requests never compete with ordinary traffic's). */
  readonly key: string
  readonly studioId: string
  readonly counts: Record<HostileKind, number>
  /** The lifetime each kind may reach, in ms: its bound, plus the lingering close and some slack. */
  readonly boundsMs: Record<HostileKind, number>
}

export interface KindReport {
  opened: number
  closed: number
  /** Longest lifetime of a closed socket, ms. */
  maxLifetimeMs: number
  /** Closed sockets that lived past their bound, and open ones already past it at the end. */
  overBound: number
  /** First answer status (or `none`) of each closed socket. */
  answers: Record<string, number>
}

export interface HostileReport {
  readonly type: 'report'
  readonly kinds: Record<HostileKind, KindReport>
  /** Fewest sockets held at once, sampled every 100 ms once all were open. */
  readonly minHeld: number
  readonly maxHeld: number
}

/** How often a socket the gateway has ended writes a byte, to learn when it is gone. */
const PROBE_MS = 500
/** How often a dripping socket sends its next byte. */
const DRIP_MS = 1000

const kinds: HostileKind[] = ['idle', 'slow_headers', 'drip_body_keyless', 'drip_body_keyed', 'idle_keep_alive']

function run(start: HostileStart) {
  const reports = Object.fromEntries(
    kinds.map((kind) => [kind, { opened: 0, closed: 0, maxLifetimeMs: 0, overBound: 0, answers: {} }]),
  ) as Record<HostileKind, KindReport>
  const open = new Map<Socket, { kind: HostileKind; openedAt: number }>()
  let stopping = false
  let minHeld = Number.POSITIVE_INFINITY
  let maxHeld = 0
  let rampedUp = false

  const opening: Record<HostileKind, () => { first: string; drip: string }> = {
    idle: () => ({ first: '', drip: '' }),
    slow_headers: () => ({ first: '', drip: 'GET /v1/studios HTTP/1.1\r\nHost: soak\r\nX-Slow: '.padEnd(4096, 'x') }),
    drip_body_keyless: () => ({
      first: `POST /v1/studios/${start.studioId}/stream/go-live HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n`,
      drip: '{'.padEnd(60_000, ' '),
    }),
    drip_body_keyed: () => ({
      first:
        `POST /v1/studios/${start.studioId}/stream/go-live HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer ${start.key}\r\n` +
        'Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n',
      drip: '{'.padEnd(60_000, ' '),
    }),
    idle_keep_alive: () => ({ first: 'GET /healthz HTTP/1.1\r\nHost: soak\r\n\r\n', drip: '' }),
  }

  function openOne(kind: HostileKind) {
    const socket = connect({ port: start.port, host: '127.0.0.1', allowHalfOpen: true })
    const openedAt = Date.now()
    reports[kind].opened++
    open.set(socket, { kind, openedAt })
    const { first, drip } = opening[kind]()
    let received = ''
    let at = 0
    let ended = false
    socket.on('data', (chunk: Buffer) => {
      if (received.length < 32) received += chunk.toString('latin1')
    })
    socket.on('error', () => {})
    socket.once('end', () => {
      ended = true
    })
    if (first !== '') socket.write(first)
    const timer = setInterval(() => {
      if (socket.destroyed) return
      if (ended) socket.write('x')
      else if (at < drip.length) socket.write(drip[at++] as string)
    }, DRIP_MS)
    const probe = setInterval(() => {
      if (ended && !socket.destroyed) socket.write('x')
    }, PROBE_MS)
    socket.once('close', () => {
      clearInterval(timer)
      clearInterval(probe)
      open.delete(socket)
      const lifetime = Date.now() - openedAt
      const report = reports[kind]
      report.closed++
      report.maxLifetimeMs = Math.max(report.maxLifetimeMs, lifetime)
      if (lifetime > start.boundsMs[kind]) report.overBound++
      const status = /^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 'none'
      report.answers[status] = (report.answers[status] ?? 0) + 1
      if (!stopping) openOne(kind)
    })
  }

  // Ramp up over about two seconds, rather than a thousand SYNs at once.
  let delay = 0
  for (const kind of kinds) {
    for (let i = 0; i < start.counts[kind]; i++) setTimeout(() => openOne(kind), (delay++ % 2000) + 1)
  }
  setTimeout(() => {
    rampedUp = true
  }, 3000)
  const sampler = setInterval(() => {
    if (!rampedUp) return
    minHeld = Math.min(minHeld, open.size)
    maxHeld = Math.max(maxHeld, open.size)
  }, 100)

  return {
    held: () => open.size,
    stop(): HostileReport {
      stopping = true
      clearInterval(sampler)
      const now = Date.now()
      for (const [socket, { kind, openedAt }] of open) {
        if (now - openedAt > start.boundsMs[kind]) reports[kind].overBound++
        socket.destroy()
      }
      return { type: 'report', kinds: reports, minHeld: Number.isFinite(minHeld) ? minHeld : 0, maxHeld }
    },
  }
}

if (process.send) {
  let running: ReturnType<typeof run> | undefined
  process.on('message', (message: HostileStart | { type: 'held' } | { type: 'stop' }) => {
    if (message.type === 'start') running = run(message)
    else if (message.type === 'held') process.send?.({ type: 'held', held: running?.held() ?? 0 })
    else if (message.type === 'stop' && running) process.send?.(running.stop())
  })
  process.on('disconnect', () => process.exit(0))
}
