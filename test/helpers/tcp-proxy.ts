import { createConnection, createServer, type Socket } from 'node:net'
import type { Test } from 'tap'

/**
 * A TCP proxy on a loopback port that a test puts between the gateway and a dependency (the
 * shared PostgreSQL, which must never be stopped), to fake its outages:
 *   - `cut()`: open connections are reset and new ones are reset on arrival (the server is gone);
 *   - `blackhole()`: connections are accepted but nothing goes through either way (a dead network
 *     path: only timeouts notice);
 *   - `refuse(error)`: open connections are reset; a new one is answered, once the client has
 *     spoken, with a PostgreSQL ErrorResponse (a SQLSTATE and a message) and closed: a server
 *     that refuses new connections in a way the shared one cannot be made to (a wrong password
 *     under trust authentication, a server starting up);
 *   - `restore()`: forwards again (connections held by a black hole are dropped, as a real
 *     network would time them out).
 */
export async function startTcpProxy(t: Test, target: { host: string; port: number }) {
  type Mode = 'forward' | 'cut' | 'blackhole' | 'refuse'
  let mode: Mode = 'forward'
  let refusal: Buffer = Buffer.alloc(0)
  const pairs = new Set<{ client: Socket; server?: Socket }>()

  const drop = (pair: { client: Socket; server?: Socket }) => {
    reset(pair.client)
    if (pair.server) reset(pair.server)
    pairs.delete(pair)
  }

  const listener = createServer((client) => {
    client.on('error', () => {})
    if (mode === 'cut') {
      reset(client)
      return
    }
    if (mode === 'refuse') {
      const answer = refusal
      client.once('data', () => client.end(answer))
      return
    }
    const pair: { client: Socket; server?: Socket } = { client }
    pairs.add(pair)
    client.on('close', () => drop(pair))
    if (mode === 'blackhole') {
      // Accept and read, never forward, never answer.
      client.resume()
      return
    }
    const server = createConnection(target)
    pair.server = server
    server.on('error', () => drop(pair))
    server.on('close', () => drop(pair))
    client.pipe(server)
    server.pipe(client)
  })
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const address = listener.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0

  const close = async () => {
    for (const pair of [...pairs]) drop(pair)
    await new Promise((resolve) => listener.close(resolve))
  }
  t.teardown(close)

  return {
    host: '127.0.0.1',
    port,
    cut() {
      mode = 'cut'
      for (const pair of [...pairs]) drop(pair)
    },
    blackhole() {
      mode = 'blackhole'
      for (const pair of pairs) {
        // Stop both directions: bytes are read and thrown away, as on a path that lost them.
        pair.client.unpipe()
        pair.server?.unpipe()
        pair.client.resume()
        pair.server?.resume()
      }
    },
    refuse(error: { code: string; message: string }) {
      mode = 'refuse'
      refusal = postgresErrorResponse(error)
      for (const pair of [...pairs]) drop(pair)
    },
    restore() {
      if (mode === 'blackhole') for (const pair of [...pairs]) drop(pair)
      mode = 'forward'
    },
    close,
  }
}

/**
 * Resets `socket` (RST), or destroys it when it is already shutting down: libuv refuses to reset a
 * socket whose write side is ending (EINVAL), and Node then drops the handle without closing it,
 * which leaves the process spinning at exit (seen as a test file that never ends under load).
 */
function reset(socket: Socket) {
  if (socket.destroyed) return
  if (socket.writableEnded) socket.destroy()
  else socket.resetAndDestroy()
}

/** A PostgreSQL wire-protocol ErrorResponse ('E'): severity FATAL, the SQLSTATE and the message. */
function postgresErrorResponse({ code, message }: { code: string; message: string }): Buffer {
  const fields = Buffer.concat(
    [
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', code],
      ['M', message],
    ].map(([type, value]) => Buffer.from(`${type}${value}\0`)),
  )
  const header = Buffer.alloc(5)
  header.write('E', 0)
  header.writeInt32BE(4 + fields.length + 1, 1)
  return Buffer.concat([header, fields, Buffer.from([0])])
}

export type TcpProxy = Awaited<ReturnType<typeof startTcpProxy>>

/** `url` (a postgres:// URL) with its host and port replaced by the proxy's. */
export function throughProxy(url: string, proxy: { host: string; port: number }): string {
  const parsed = new URL(url)
  parsed.hostname = proxy.host
  parsed.port = String(proxy.port)
  return parsed.toString()
}
