import { LRUCache } from 'lru-cache'
import type { Studio } from '../schemas/resources.js'
import type { StudioService } from './types.js'

/**
 * Studios found by `getStudio`, kept in memory: the hot read of the API. In the gateway's own store
 * a studio is never renamed, moved to another account nor deleted (the store only creates them),
 * so an entry cannot go stale and other processes' writes (the CLI, other instances) cannot
 * contradict it; only found studios are kept, so a studio created elsewhere is seen at once. The
 * TTL and bound only cap memory. A hit answers at once, without a promise.
 */
const STUDIO_CACHE_MAX = 10_000
const STUDIO_CACHE_TTL_MS = 5 * 60_000

export function cacheFoundStudios(service: StudioService): StudioService {
  // Keyed by mode, account and id together: a studio is only ever found through its own account
  // and mode (a live key never gets the sandbox's entry, nor a test key the live one).
  const found = new LRUCache<string, Studio>({ max: STUDIO_CACHE_MAX, ttl: STUDIO_CACHE_TTL_MS })
  return {
    ...service,
    getStudio(ctx, studioId) {
      // Length-prefixed, so no pair of ids can spell another pair's key.
      const cacheKey = `${ctx.mode}:${ctx.accountId.length}:${ctx.accountId}${studioId}`
      const cached = found.get(cacheKey)
      if (cached) return cached
      return Promise.resolve(service.getStudio(ctx, studioId)).then((studio) => {
        if (studio) found.set(cacheKey, studio)
        return studio
      })
    },
  }
}
