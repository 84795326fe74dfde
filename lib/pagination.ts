import { DEFAULT_PAGE_LIMIT } from '../schemas/primitives.js'
import type { Page, PageRequest } from '../stores/types.js'
import type { CursorCodec, ListIdentity } from './cursor.js'

export interface PageQuery {
  /** Validation fills in the default; a caller that skipped it gets the same. */
  readonly limit?: number
  readonly cursor?: string
}

/**
 * One page of a list: decodes the cursor for this list (400 when it was not issued for it),
 * fetches, and signs the position the service gave for the next page as the next cursor.
 * Undefined when the list's parent does not exist for the caller.
 */
export async function fetchPage<T>(
  cursors: CursorCodec,
  identity: ListIdentity,
  query: PageQuery,
  fetch: (page: PageRequest) => Promise<Page<T> | undefined>,
): Promise<{ data: T[]; nextCursor: string | null } | undefined> {
  const after = query.cursor === undefined ? undefined : cursors.decode(identity, query.cursor)
  const limit = query.limit ?? DEFAULT_PAGE_LIMIT
  const page = await fetch(after === undefined ? { limit } : { limit, after })
  if (page === undefined) return undefined
  return { data: page.items, nextCursor: page.next === null ? null : cursors.encode(identity, page.next) }
}
