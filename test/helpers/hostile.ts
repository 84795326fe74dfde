import { connect, type Server, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { type RunningCli, spawnEntry } from './process.js'

/** One HTTP/1.1 answer read off a raw socket. */
export interface RawAnswer {
  readonly status: number
  /** Lower-cased names. */
  readonly headers: Record<string, string>
  readonly body: string
  /** The envelope's error, when the body is one. */
  readonly error: { code: string; message: string; requestId: string } | undefined
}

/** Splits what a server wrote into its answers (bodies by Content-Length, as the gateway sends them). */
export function parseAnswers(text: string): RawAnswer[] {
  const answers: RawAnswer[] = []
  let rest = text
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n')
    if (end === -1) break
    const [statusLine = '', ...lines] = rest.slice(0, end).split('\r\n')
    const headers: Record<string, string> = {}
    for (const line of lines) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
    }
    const length = Number(headers['content-length'] ?? 0)
    const body = rest.slice(end + 4, end + 4 + length)
    rest = rest.slice(end + 4 + length)
    let error: RawAnswer['error']
    try {
      error = (JSON.parse(body) as { error?: RawAnswer['error'] }).error
    } catch {
      error = undefined
    }
    answers.push({ status: Number(statusLine.split(' ')[1]), headers, body, error })
  }
  return answers
}

export interface HostileClient {
  readonly socket: Socket
  /** Everything received so far, as latin1 text. */
  received(): string
  answers(): RawAnswer[]
  /** Resolves once the connection is gone (reset, or closed on both sides): ms since the client connected. */
  readonly closed: Promise<number>
  /** Resolves once the server has ended its side (FIN), or the connection is gone. */
  readonly ended: Promise<number>
  /** Writes, unless the socket is gone (a server that hung up is what some tests wait for). */
  send(bytes: string | Buffer): void
  /** Sends `bytes` one byte every `everyMs` until the socket closes or `stop()`. */
  drip(bytes: string, everyMs: number): { stop(): void }
  /** The first complete answer; rejects after `timeoutMs`. */
  answer(timeoutMs?: number): Promise<RawAnswer>
  destroy(): void
}

/**
 * A raw TCP client, as a hostile one would be: it keeps its side open after the server's FIN
 * (allowHalfOpen), so only the server can end the connection, and it ignores write errors.
 */
export function hostileClient(port: number): HostileClient {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  const startedAt = Date.now()
  let text = ''
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1')
  })
  socket.on('error', () => {})
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - startedAt)))
  const ended = new Promise<number>((resolve) => {
    socket.once('end', () => resolve(Date.now() - startedAt))
    void closed.then(resolve)
  })
  const client: HostileClient = {
    socket,
    received: () => text,
    answers: () => parseAnswers(text),
    closed,
    ended,
    send(bytes) {
      if (!socket.destroyed && socket.writable) socket.write(bytes)
    },
    drip(bytes, everyMs) {
      let at = 0
      const timer = setInterval(() => {
        if (socket.destroyed || at >= bytes.length) return clearInterval(timer)
        client.send(bytes.slice(at, at + 1))
        at++
      }, everyMs)
      void closed.then(() => clearInterval(timer))
      return { stop: () => clearInterval(timer) }
    },
    async answer(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs
      while (Date.now() < deadline) {
        const [first] = parseAnswers(text)
        if (first) return first
        await sleep(10)
      }
      throw new Error(`no answer within ${timeoutMs} ms; received: ${JSON.stringify(text.slice(0, 200))}`)
    },
    destroy: () => socket.destroy(),
  }
  return client
}

/**
 * Resolves once the gateway holds no client connection any more (it has let go of every socket,
 * whether or not the client noticed: a silent client never learns of a FIN): 'timeout' after `ms`.
 */
export async function released(server: Server, ms: number): Promise<'released' | 'timeout'> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if ((await openConnections(server)) === 0) return 'released'
    await sleep(20)
  }
  return 'timeout'
}

/** How many connections `server` holds open now. */
export function openConnections(server: Server): Promise<number> {
  return new Promise((resolve, reject) =>
    server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
  )
}

/** Whether `promise` settles within `ms`: the value, or 'timeout'. The timer never holds the process. */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** The command line from source. */
export const cliEntry = fileURLToPath(new URL('./cli-entry.ts', import.meta.url))

/** A gateway in a process of its own: what a client across the network would face. */
export interface GatewayProcess {
  readonly process: RunningCli
  readonly origin: string
  readonly port: number
  readonly key: string
}

/**
 * Starts `entry` on an empty store (the demo seed prints a key with every scope, and the address),
 * optionally under a descriptor limit; killed at the end of the test.
 */
export async function startGatewayProcess(
  t: Test,
  entry: string,
  args: string[],
  env: Record<string, string>,
  descriptorLimit?: number,
) {
  const running = spawnEntry(
    entry,
    args,
    { DATA_DIR: t.testdir(), PORT: '0', LOG_LEVEL: 'warn', ...env },
    { descriptorLimit },
  )
  t.teardown(async () => {
    if (running.child.exitCode === null && running.child.signalCode === null) {
      running.child.kill('SIGKILL')
      await running.exited
    }
  })
  const [, key = ''] = await running.waitFor(/export STUDIO_KEY=(sk_live_\w+)/, 30_000)
  const [, origin = ''] = await running.waitFor(/(http:\/\/127\.0\.0\.1:\d+)\/v1\/studios/)
  return { process: running, origin, port: Number(new URL(origin).port), key } satisfies GatewayProcess
}
