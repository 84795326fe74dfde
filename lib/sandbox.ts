import type { StudioAdmin, StudioRecord } from '../stores/types.js'

/** The studios an account's sandbox starts with, the first time a test key is minted for it. */
const SANDBOX_STUDIO_NAMES = ['Sandbox Stage', 'Sandbox Booth'] as const

/**
 * Gives the account's sandbox its starting studios unless it has some already: a test key
 * always has something to read and to take live. Answers the studios created (none when the
 * sandbox had studios).
 */
export async function provisionSandbox(
  studios: StudioAdmin,
  accountId: string,
  starting: readonly { readonly name: string; readonly id?: string }[] = SANDBOX_STUDIO_NAMES.map((name) => ({ name })),
): Promise<StudioRecord[]> {
  if ((await studios.listAccountStudios(accountId, 'test')).length > 0) return []
  const created: StudioRecord[] = []
  for (const studio of starting) created.push(await studios.createStudio({ accountId, mode: 'test', ...studio }))
  return created
}
