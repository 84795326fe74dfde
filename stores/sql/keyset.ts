import { sql } from 'kysely'
import { BadPosition } from '../errors.js'
import type { Page, PageRequest } from '../types.js'

/**
 * Keyset paging, shared by every list of the SQL store: rows are fetched ordered by (sort value,
 * id) with `limit + 1`, and a page's position is the sort value and id of its last row, as JSON.
 * Positions travel inside signed cursors, so a malformed one means a cursor issued by another kind
 * of store behind the same secret (the upstream): a bad position, answered like any foreign cursor.
 */
export interface Keyset {
  readonly sortValue: string
  readonly id: string
}

export const encodeKeyset = (sortValue: string, id: string) => JSON.stringify([sortValue, id])

export function decodeKeyset(position: string): Keyset {
  let decoded: unknown
  try {
    decoded = JSON.parse(position)
  } catch {
    throw new BadPosition()
  }
  if (
    !Array.isArray(decoded) ||
    decoded.length !== 2 ||
    typeof decoded[0] !== 'string' ||
    typeof decoded[1] !== 'string'
  ) {
    throw new BadPosition()
  }
  return { sortValue: decoded[0], id: decoded[1] }
}

/** Rows fetched with `limit + 1`: the extra row only says that another page follows. */
export function toPage<Row, T>(
  rows: Row[],
  page: PageRequest,
  convert: (row: Row) => T,
  positionOf: (row: Row) => string,
): Page<T> {
  const hasMore = rows.length > page.limit
  const items = hasMore ? rows.slice(0, page.limit) : rows
  const last = items.at(-1)
  return { items: items.map(convert), next: hasMore && last !== undefined ? positionOf(last) : null }
}

/**
 * The rows after a position, in a list ordered by (created_at, id) ascending: one row-value
 * comparison, which SQLite and PostgreSQL both answer from the (account, created_at) index.
 */
export function createdAfter(position: string) {
  const { sortValue, id } = decodeKeyset(position)
  return sql<boolean>`(created_at, id) > (${sortValue}, ${id})`
}
