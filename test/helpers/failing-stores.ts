import type { Scope } from '../../lib/api-keys.js'
import type { KeyStore, SqlStore, StudioService } from '../../stores/types.js'

/**
 * Stores that fail the way a dependency does, for the codes only a failure earns (pass them as
 * `keys` / `studios` to `startGateway`).
 */

/** Every studio operation throws `error()`: with `badGateway(…)`, an upstream that answers 502. */
export const failingStudios =
  (error: () => Error) =>
  (studios: StudioService): StudioService => {
    const fail = async () => {
      throw error()
    }
    return {
      ...studios,
      listStudios: fail,
      getStudio: fail,
      getStream: fail,
      listSessions: fail,
      goLive: fail,
      goOffline: fail,
    }
  }

/** Key verification cannot reach its store: 503 unavailable, before anything else. */
export const keyStoreDown = (store: SqlStore): KeyStore => ({
  ...store.keys,
  findByHash: async () => {
    throw new Error('connect ECONNREFUSED')
  },
})

/** A key record the code does not expect: anything unexpected is 500 internal. */
export const keyStoreCorrupt = (store: SqlStore): KeyStore => ({
  ...store.keys,
  findByHash: async (hash) => {
    const record = await store.keys.findByHash(hash)
    return record && { ...record, scopes: null as unknown as Scope[] }
  },
})
