import { LRUCache } from 'lru-cache'
import type { Studio } from '../schemas/resources.js'
import type { CallContext, StudioService } from './types.js'

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
  // Keyed by the studio id alone (ids are unique across accounts and modes), with the account and
  // mode it was found through: an entry answers only that account in that mode (a live key never
  // gets the sandbox's entry, nor a test key the live one, nor another account its owner's).
  // Anyone else asks the store, which answers them as if nothing were kept.
  const found = new LRUCache<string, FoundStudio>({ max: STUDIO_CACHE_MAX, ttl: STUDIO_CACHE_TTL_MS })
  return {
    ...service,
    getStudio(ctx, studioId) {
      const cached = found.get(studioId)
      if (cached !== undefined && cached.accountId === ctx.accountId && cached.mode === ctx.mode) return cached.studio
      return Promise.resolve(service.getStudio(ctx, studioId)).then((studio) => {
        if (studio) found.set(studioId, { studio, accountId: ctx.accountId, mode: ctx.mode })
        return studio
      })
    },
  }
}

interface FoundStudio {
  readonly studio: Studio
  readonly accountId: string
  readonly mode: CallContext['mode']
}
