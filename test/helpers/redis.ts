import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import type { Test } from 'tap'

/**
 * Redis for tests. The shared Redis (REDIS_URL) serves every engineer's tests at once: a test only
 * ever touches keys under its own prefix, and deletes them at teardown. Outages are tested on a
 * redis-server the test spawns itself, or on a port where nothing listens.
 */

/** The REDIS_URL of the test process; the suite is skipped without it (see `redisSuite`). */
export const sharedRedisUrl = process.env.REDIS_URL?.trim() || undefined

/** A key prefix of its own for one test: `studio-gateway-test:<pid>:<random>:`. */
export const uniquePrefix = () => `studio-gateway-test:${process.pid}:${randomBytes(6).toString('hex')}:`

/**
 * A client on the shared Redis for assertions, closed at teardown after deleting every key under
 * `prefix`. Rejects (failing the test) when REDIS_URL is set but Redis does not answer.
 */
export async function sharedRedis(t: Test, prefix: string): Promise<Redis> {
  if (!sharedRedisUrl) throw new Error('REDIS_URL is not set')
  const client = new Redis(sharedRedisUrl, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
  } catch (error) {
    client.disconnect()
    throw new Error(`REDIS_URL is set but Redis does not answer: ${(error as Error).message}`)
  }
  t.teardown(async () => {
    await deleteKeys(client, prefix)
    await client.quit()
  })
  return client
}

/** The keys under a prefix (SCAN, never KEYS on a shared server). */
export async function keysUnder(client: Redis, prefix: string): Promise<string[]> {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
    cursor = next
    found.push(...keys)
  } while (cursor !== '0')
  return found
}

async function deleteKeys(client: Redis, prefix: string) {
  const keys = await keysUnder(client, prefix)
  if (keys.length > 0) await client.del(...keys)
}

/** A TCP port nothing listens on (a moment ago). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

export interface OwnRedis {
  readonly url: string
  readonly port: number
  /** Kills the server (SIGKILL): an abrupt outage. */
  kill(): Promise<void>
  /** Starts it again on the same port (empty: it keeps no data). */
  start(): Promise<void>
  /** SIGSTOP / SIGCONT: a server that stalls (connections open, no answers) and resumes. */
  pause(): void
  resume(): void
}

/** A redis-server of the test's own on a free port, killed at teardown. Never the shared one. */
export async function spawnRedisServer(t: Test): Promise<OwnRedis> {
  const port = await freePort()
  let child: ChildProcess | undefined

  const start = async () => {
    const started = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    )
    child = started
    const client = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null })
    client.on('error', () => {})
    try {
      for (let attempt = 0; ; attempt++) {
        if (started.exitCode !== null) throw new Error(`redis-server exited with ${started.exitCode}`)
        try {
          await client.connect()
          await client.ping()
          return
        } catch (error) {
          if (attempt > 100) throw error
          client.disconnect()
          await sleep(50)
        }
      }
    } finally {
      client.disconnect()
    }
  }

  const kill = async () => {
    const running = child
    if (!running || running.exitCode !== null || running.signalCode !== null) return
    const exited = new Promise((resolve) => running.once('exit', resolve))
    running.kill('SIGKILL')
    await exited
  }

  await start()
  t.teardown(kill)
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill,
    start,
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
  }
}
