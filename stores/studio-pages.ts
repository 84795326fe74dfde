import { LRUCache } from 'lru-cache'
import type { Studio } from '../schemas/resources.js'
import type { Page, StudioAdmin, StudioService } from './types.js'

/** Pages kept at most (a page holds up to 100 studios: a few MB at most). */
const MAX_PAGES = 256

/**
 * Pages of the studios list kept in memory on the embedded store, exact: `version()` is SQLite's
 * `PRAGMA data_version`, which changes whenever another connection (the command line) commits, and
 * this process's own studio creations clear the pages too. A list of 100 then costs no query: the
 * database read of 101 rows is most of what the list costs otherwise. A page answers at once.
 */
export function cacheStudioPages<T extends StudioService & StudioAdmin>(studios: T, version: () => number): T {
  const pages = new LRUCache<string, Page<Studio>>({ max: MAX_PAGES })
  let seen = version()
  // Bumped on every change: a read that started before one never stores its (maybe stale) page.
  let generation = 0
  const changed = () => {
    generation++
    pages.clear()
  }
  return {
    ...studios,
    listStudios(ctx, page) {
      const current = version()
      if (current !== seen) {
        seen = current
        changed()
      }
      // One list per account and mode: the sandbox's pages are never a live key's, nor the reverse.
      const key = `${ctx.mode}:${page.limit}:${ctx.accountId.length}:${ctx.accountId}${page.after ?? ''}`
      const cached = pages.get(key)
      if (cached) return cached
      const started = generation
      return Promise.resolve(studios.listStudios(ctx, page)).then((found) => {
        if (generation === started) pages.set(key, found)
        return found
      })
    },
    async createStudio(input) {
      try {
        return await studios.createStudio(input)
      } finally {
        changed()
      }
    },
  }
}
