import type { SqlStore } from '../stores/types.js'
import { scopes } from './api-keys.js'
import { mintKey } from './mint-key.js'
import { provisionSandbox } from './sandbox.js'

export const DEMO_ACCOUNT = 'acct_demo'
/** Fixed ids, so the README's curl examples work as written. */
export const DEMO_STUDIOS = [
  { id: 'std_DemoMainStage001', name: 'Main Stage' },
  { id: 'std_DemoPodcastBooth', name: 'Podcast Booth' },
] as const
/** The demo account's sandbox studios, seen only by its test key (docs/test-mode.md). */
export const DEMO_SANDBOX_STUDIOS = [
  { id: 'std_DemoSandboxStage', name: 'Sandbox Stage' },
  { id: 'std_DemoSandboxBooth', name: 'Sandbox Booth' },
] as const

/** The demo's two secrets, shown once: a live key and a test key, each holding every scope. */
export interface DemoSecrets {
  readonly live: string
  readonly test: string
}

/**
 * On an empty store, creates the demo account's studios, its sandbox studios, and a live and a
 * test key holding every scope. Returns the keys' secrets (to print once), or undefined when the
 * store already has data.
 */
export async function seedDemo(store: SqlStore): Promise<DemoSecrets | undefined> {
  if (!(await store.studios.isEmpty())) return undefined
  for (const studio of DEMO_STUDIOS) {
    await store.studios.createStudio({ accountId: DEMO_ACCOUNT, ...studio })
  }
  await provisionSandbox(store.studios, DEMO_ACCOUNT, DEMO_SANDBOX_STUDIOS)
  const live = mintKey({ accountId: DEMO_ACCOUNT, scopes })
  const test = mintKey({ accountId: DEMO_ACCOUNT, mode: 'test', scopes })
  await store.keys.insert(live.record)
  await store.keys.insert(test.record)
  return { live: live.secret, test: test.secret }
}
