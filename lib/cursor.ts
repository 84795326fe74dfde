import { createHmac, timingSafeEqual } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { Mode } from './api-keys.js'
import { cursorRejected } from './errors.js'

/**
 * Opaque, signed pagination cursors. The payload is the position where the page ended, as the
 * studio service issued it (a keyset for the SQL store, the upstream's own token for the HTTP
 * service: this codec does not look inside). The signature covers the payload and the list it
 * belongs to (which list, which account and mode, which parent), so a cursor that was made up, altered, or
 * issued for another list or account fails verification.
 */
export interface ListIdentity {
  readonly list: 'studios' | 'sessions' | 'keys'
  readonly accountId: string
  /** A sandbox list's cursor is not a live list's (nor the reverse). */
  readonly mode: Mode
  readonly parentId?: string
}

const TAG_BYTES = 16

/**
 * What a cursor is bound to, as signed text. A sandbox list is marked; a live one is written as it
 * was before test mode existed, so cursors issued by an earlier release keep working.
 */
const listOf = (identity: ListIdentity) =>
  `${identity.list}${identity.mode === 'test' ? '\ntest' : ''}\n${identity.accountId}\n${identity.parentId ?? ''}`

const b64url = (buffer: Buffer) => buffer.toString('base64url')

export function createCursorCodec(secret: Buffer) {
  const tagOf = (identity: ListIdentity, payload: string) =>
    createHmac('sha256', secret)
      .update(`${listOf(identity)}\n${payload}`)
      .digest()
      .subarray(0, TAG_BYTES)

  // The cursors of hot pages are signed once: the same list, account and position give the same cursor.
  const issued = new LRUCache<string, string>({ max: 1000 })

  return {
    encode(identity: ListIdentity, position: string): string {
      const key = `${listOf(identity)}\n${position}`
      let cursor = issued.get(key)
      if (cursor === undefined) {
        const payload = b64url(Buffer.from(position, 'utf8'))
        cursor = `${payload}.${b64url(tagOf(identity, payload))}`
        issued.set(key, cursor)
      }
      return cursor
    },

    /**
     * The position a cursor stands for; throws `invalid_request` unless it is exactly a string
     * issued for this list. Node's base64 decoders skip what they do not expect (padding, spaces,
     * the other alphabet), so both parts must re-encode to the very text sent.
     */
    decode(identity: ListIdentity, cursor: string): string {
      const dot = cursor.indexOf('.')
      if (dot <= 0) throw cursorRejected()
      const payload = cursor.slice(0, dot)
      const sentTag = cursor.slice(dot + 1)
      const tag = Buffer.from(sentTag, 'base64url')
      if (tag.length !== TAG_BYTES || b64url(tag) !== sentTag) throw cursorRejected()
      if (!timingSafeEqual(tag, tagOf(identity, payload))) throw cursorRejected()
      const position = Buffer.from(payload, 'base64url')
      // Signed, so issued by us; checked anyway, so that only one spelling of a cursor exists.
      if (b64url(position) !== payload) throw cursorRejected()
      return position.toString('utf8')
    },
  }
}

export type CursorCodec = ReturnType<typeof createCursorCodec>
