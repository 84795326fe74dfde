import type { RedisOptions } from 'ioredis'
import { type InvalidationChannel, type InvalidationHandlers, KEY_ID_SHAPE } from './channel.js'

/** Bounded like the limiter's connection: a publish never waits on a Redis that is down. */
const OPTIONS: RedisOptions = {
  lazyConnect: true,
  connectTimeout: 500,
  commandTimeout: 500,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
}

/**
 * Redis pub/sub (REDIS_URL), on two connections: a subscribed connection cannot publish. The
 * channel is under REDIS_KEY_PREFIX. ioredis subscribes again after a reconnection; every cache
 * is emptied then, since messages sent meanwhile were lost.
 */
export async function redisChannel(
  url: string,
  prefix: string,
  handlers: InvalidationHandlers,
): Promise<InvalidationChannel> {
  const { Redis } = await import('ioredis')
  const channel = `${prefix}key-invalidations`
  // The subscription waits for a connection (it is the one command this connection sends).
  const { commandTimeout: _, ...subscriberOptions } = OPTIONS
  const subscriber = new Redis(url, { ...subscriberOptions, enableOfflineQueue: true, maxRetriesPerRequest: null })
  const publisher = new Redis(url, OPTIONS)
  let everReady = false
  let reported = false
  for (const connection of [subscriber, publisher]) {
    connection.on('error', (error: Error) => {
      if (reported) return
      reported = true
      handlers.onError(error, 'the key invalidation channel (Redis) is down; reconnecting')
    })
  }
  subscriber.on('ready', () => {
    reported = false
    if (everReady) handlers.onResync()
    everReady = true
  })
  subscriber.on('message', (from: string, keyId: string) => {
    if (from === channel && KEY_ID_SHAPE.test(keyId)) handlers.onKey(keyId)
  })
  // Down at start: serve anyway (caches are bounded by KEY_CACHE_TTL); ioredis keeps trying.
  await Promise.allSettled([subscriber.connect(), publisher.connect()])
  subscriber.subscribe(channel).catch((error) => handlers.onError(error, 'could not subscribe to key invalidations'))

  return {
    name: 'redis',
    async publish(keyId) {
      await publisher.publish(channel, keyId)
    },
    async close() {
      subscriber.disconnect()
      publisher.disconnect()
    },
  }
}
