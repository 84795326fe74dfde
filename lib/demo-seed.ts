import type { SqlStore } from '../stores/types.js'
import { scopes } from './api-keys.js'
import { mintKey } from './mint-key.js'

export const DEMO_ACCOUNT = 'acct_demo'
/** Fixed ids, so the README's curl examples work as written. */
export const DEMO_STUDIOS = [
  { id: 'std_DemoMainStage001', name: 'Main Stage' },
  { id: 'std_DemoPodcastBooth', name: 'Podcast Booth' },
] as const

/**
 * On an empty store, creates the demo account's studios and one key holding every scope.
 * Returns the key's secret (to print once), or undefined when the store already has data.
 */
export async function seedDemo(store: SqlStore): Promise<string | undefined> {
  if (!(await store.studios.isEmpty())) return undefined
  for (const studio of DEMO_STUDIOS) {
    await store.studios.createStudio({ accountId: DEMO_ACCOUNT, ...studio })
  }
  const { record, secret } = mintKey({ accountId: DEMO_ACCOUNT, scopes })
  await store.keys.insert(record)
  return secret
}
