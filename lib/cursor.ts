import { createHmac, timingSafeEqual } from 'node:crypto'
import { invalidRequest } from './errors.js'

/**
 * Opaque, signed pagination cursors. The payload is the keyset position (sort value and id of
 * the last item served); the signature covers the payload and the list it belongs to (which list,
 * which account, which parent), so a cursor that was made up, altered, or issued for another list
 * or account fails verification.
 */
export interface CursorPosition {
  /** The sort value of the last item served (a timestamp). */
  readonly after: string
  /** Its id, the tie-breaker. */
  readonly id: string
}

export interface ListIdentity {
  readonly list: 'studios' | 'sessions'
  readonly accountId: string
  readonly parentId?: string
}

const TAG_BYTES = 16

const b64url = (buffer: Buffer) => buffer.toString('base64url')

export function createCursorCodec(secret: Buffer) {
  const tagOf = (identity: ListIdentity, payload: string) =>
    createHmac('sha256', secret)
      .update(`${identity.list}\n${identity.accountId}\n${identity.parentId ?? ''}\n${payload}`)
      .digest()
      .subarray(0, TAG_BYTES)

  const rejected = () =>
    invalidRequest(
      'querystring parameter "cursor" is not valid for this list: use the nextCursor of a previous page unchanged',
    )

  return {
    encode(identity: ListIdentity, position: CursorPosition): string {
      const payload = b64url(Buffer.from(JSON.stringify([position.after, position.id])))
      return `${payload}.${b64url(tagOf(identity, payload))}`
    },

    /** The position a cursor stands for; throws `invalid_request` when it was not issued for this list. */
    decode(identity: ListIdentity, cursor: string): CursorPosition {
      const dot = cursor.indexOf('.')
      if (dot <= 0) throw rejected()
      const payload = cursor.slice(0, dot)
      const tag = Buffer.from(cursor.slice(dot + 1), 'base64url')
      if (tag.length !== TAG_BYTES || !timingSafeEqual(tag, tagOf(identity, payload))) throw rejected()
      let decoded: unknown
      try {
        decoded = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
      } catch {
        throw rejected()
      }
      if (
        !Array.isArray(decoded) ||
        decoded.length !== 2 ||
        typeof decoded[0] !== 'string' ||
        typeof decoded[1] !== 'string'
      ) {
        throw rejected()
      }
      return { after: decoded[0], id: decoded[1] }
    },
  }
}

export type CursorCodec = ReturnType<typeof createCursorCodec>
