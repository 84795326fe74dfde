import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'

/** One scripted answer: a response, a request left hanging, or a connection cut without answer. */
export type Step = { status: number; headers?: Record<string, string>; body?: string } | 'hang' | 'reset'

export interface Received {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: string
}

/** The gateway's error envelope, as the scripted server answers it. */
export function envelope(
  status: number,
  code: string,
  options: { headers?: Record<string, string>; requiredScope?: string; requestId?: string } = {},
): Step {
  const requestId = options.requestId ?? `req_${code}`
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'x-request-id': requestId, ...options.headers },
    body: JSON.stringify({
      error: {
        code,
        message: `scripted ${code}`,
        requestId,
        ...(options.requiredScope === undefined ? {} : { requiredScope: options.requiredScope }),
      },
    }),
  }
}

export function json(body: unknown, headers: Record<string, string> = {}): Step {
  return { status: 200, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) }
}

export interface ScriptedServer {
  /** The base URL to give the client. */
  url: string
  /** Every request received, in order. */
  received: Received[]
  /** Resolves with the n-th request (from 1) once it has arrived. */
  request(n: number): Promise<Received>
}

/**
 * A tiny node:http server answering a scripted sequence of steps, one per request, to drive the
 * client through exact failure sequences. A request beyond the script fails the test.
 */
export async function scriptedServer(t: Test, steps: Step[]): Promise<ScriptedServer> {
  const received: Received[] = []
  const waiting = new Map<number, (request: Received) => void>()
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const request = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      body: Buffer.concat(chunks).toString(),
    }
    received.push(request)
    waiting.get(received.length)?.(request)
    const step = steps[received.length - 1]
    if (step === undefined) {
      t.fail(`unexpected request #${received.length}: ${request.method} ${request.url}`)
      res.writeHead(599).end()
    } else if (step === 'reset') {
      req.socket.destroy()
    } else if (step !== 'hang') {
      res.writeHead(step.status, step.headers).end(step.body ?? '')
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    request: (n) => {
      const arrived = received[n - 1]
      if (arrived) return Promise.resolve(arrived)
      return new Promise((resolve) => waiting.set(n, resolve))
    },
  }
}

/** A port nothing listens on: bound, then released. */
export async function deadPort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
