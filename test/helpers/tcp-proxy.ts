import { createConnection, createServer, type Socket } from 'node:net'
import type { Test } from 'tap'

/**
 * A TCP proxy on a loopback port that a test puts between the gateway and a dependency (the
 * shared PostgreSQL, which must never be stopped), to fake its outages:
 *   - `cut()`: open connections are reset and new ones are reset on arrival (the server is gone);
 *   - `blackhole()`: connections are accepted but nothing goes through either way (a dead network
 *     path: only timeouts notice);
 *   - `restore()`: forwards again (connections held by a black hole are dropped, as a real
 *     network would time them out).
 */
export async function startTcpProxy(t: Test, target: { host: string; port: number }) {
  type Mode = 'forward' | 'cut' | 'blackhole'
  let mode: Mode = 'forward'
  const pairs = new Set<{ client: Socket; server?: Socket }>()

  const drop = (pair: { client: Socket; server?: Socket }) => {
    pair.client.resetAndDestroy()
    pair.server?.resetAndDestroy()
    pairs.delete(pair)
  }

  const listener = createServer((client) => {
    client.on('error', () => {})
    if (mode === 'cut') {
      client.resetAndDestroy()
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
    restore() {
      if (mode === 'blackhole') for (const pair of [...pairs]) drop(pair)
      mode = 'forward'
    },
    close,
  }
}

export type TcpProxy = Awaited<ReturnType<typeof startTcpProxy>>

/** `url` (a postgres:// URL) with its host and port replaced by the proxy's. */
export function throughProxy(url: string, proxy: { host: string; port: number }): string {
  const parsed = new URL(url)
  parsed.hostname = proxy.host
  parsed.port = String(proxy.port)
  return parsed.toString()
}
