import pg from 'pg'
import { type InvalidationChannel, type InvalidationHandlers, KEY_ID_SHAPE } from './channel.js'

/** How long a connection attempt may take, and the longest wait between two. */
const CONNECT_TIMEOUT_MS = 1000
const MAX_RETRY_DELAY_MS = 1000

/**
 * PostgreSQL LISTEN/NOTIFY on a connection of its own (a pooled one cannot stay listening). The
 * channel is named for the schema the tables live in, so deployments (and tests) sharing a
 * database do not hear each other. A lost connection is made again, at most a second apart, and
 * every cache is emptied once it listens again.
 */
export async function postgresChannel(url: string, handlers: InvalidationHandlers): Promise<InvalidationChannel> {
  let client: pg.Client | undefined
  let channel: string | undefined
  let closed = false
  let attempt = 0
  let retry: NodeJS.Timeout | undefined

  async function listen(): Promise<void> {
    const next = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      keepAlive: true,
      application_name: 'studio-gateway key invalidations',
    })
    next.on('error', (error) => lost(next, error))
    next.on('end', () => lost(next, new Error('connection ended')))
    next.on('notification', ({ payload }) => {
      if (payload !== undefined && KEY_ID_SHAPE.test(payload)) handlers.onKey(payload)
    })
    try {
      await next.connect()
      const { rows } = await next.query<{ schema: string }>('select current_schema() as schema')
      channel = `studio_gateway_keys.${rows[0]?.schema ?? 'public'}`.slice(0, 63)
      await next.query(`listen "${channel.replaceAll('"', '""')}"`)
    } catch (error) {
      next.removeAllListeners('end')
      await next.end().catch(() => {})
      throw error
    }
    if (closed) {
      await next.end().catch(() => {})
      return
    }
    client = next
    if (attempt > 0) handlers.onResync()
    attempt = 0
  }

  function lost(which: pg.Client, error: unknown) {
    if (closed || client !== which) return
    client = undefined
    which.removeAllListeners('end')
    which.end().catch(() => {})
    handlers.onError(error, 'the key invalidation channel (PostgreSQL) was lost; reconnecting')
    reconnect()
  }

  function reconnect() {
    if (closed || retry) return
    attempt++
    retry = setTimeout(
      () => {
        retry = undefined
        listen().catch((error) => {
          handlers.onError(error, 'could not listen for key invalidations on PostgreSQL; retrying')
          reconnect()
        })
      },
      Math.min(attempt * 200, MAX_RETRY_DELAY_MS),
    )
    retry.unref()
  }

  try {
    await listen()
  } catch (error) {
    // Down at start: serve anyway (caches are bounded by KEY_CACHE_TTL) and keep trying.
    handlers.onError(error, 'could not listen for key invalidations on PostgreSQL; retrying')
    reconnect()
  }

  return {
    name: 'postgres',
    async publish(keyId) {
      if (!client || channel === undefined) throw new Error('the PostgreSQL key invalidation channel is down')
      await client.query('select pg_notify($1, $2)', [channel, keyId])
    },
    async close() {
      closed = true
      clearTimeout(retry)
      const open = client
      client = undefined
      await open?.end().catch(() => {})
    },
  }
}
