import type { Config } from '../../config.js'
import type { InvalidationChannel, InvalidationHandlers } from './channel.js'

/**
 * The channel the deployment already runs: Redis pub/sub when REDIS_URL is set, else PostgreSQL
 * LISTEN/NOTIFY when DATABASE_URL is set, else this process (the embedded store). Each driver is
 * loaded only when used.
 */
export async function openInvalidationChannel(
  config: Config,
  handlers: InvalidationHandlers,
): Promise<InvalidationChannel> {
  if (config.redisUrl !== undefined) {
    const { redisChannel } = await import('./redis.js')
    return redisChannel(config.redisUrl, config.redisKeyPrefix, handlers)
  }
  if (config.databaseUrl !== undefined) {
    const { postgresChannel } = await import('./postgres.js')
    return postgresChannel(config.databaseUrl, handlers)
  }
  const { processChannel } = await import('./process.js')
  return processChannel(config.dataDir, handlers)
}
