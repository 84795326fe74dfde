import { DEFAULT_PAGE_LIMIT } from '../schemas/primitives.js'
import type { Page, PageRequest } from '../stores/types.js'
import type { CursorCodec, ListIdentity } from './cursor.js'

export interface PageQuery {
  /** Validation fills in the default; a caller that skipped it gets the same. */
  readonly limit?: number
  readonly cursor?: string
}

export interface ListPage<T> {
  readonly data: T[]
  readonly nextCursor: string | null
}

/**
 * One page of a list: decodes the cursor for this list (400 when it was not issued for it),
 * fetches, and signs the position the service gave for the next page as the next cursor.
 * Undefined when the list's parent does not exist for the caller. A page the service answers at
 * once (from memory) is answered at once.
 */
export function fetchPage<T>(
  cursors: CursorCodec,
  identity: ListIdentity,
  query: PageQuery,
  fetch: (page: PageRequest) => Page<T> | undefined | Promise<Page<T> | undefined>,
): ListPage<T> | undefined | Promise<ListPage<T> | undefined> {
  const after = query.cursor === undefined ? undefined : cursors.decode(identity, query.cursor)
  const limit = query.limit ?? DEFAULT_PAGE_LIMIT
  const found = fetch(after === undefined ? { limit } : { limit, after })
  const toListPage = (page: Page<T> | undefined): ListPage<T> | undefined =>
    page === undefined
      ? undefined
      : { data: page.items, nextCursor: page.next === null ? null : cursors.encode(identity, page.next) }
  return found instanceof Promise ? found.then(toListPage) : toListPage(found)
}
