import { randomBytes } from 'node:crypto'

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

/** `length` characters drawn uniformly from base62 with a CSPRNG (no modulo bias). */
export function randomBase62(length: number): string {
  let out = ''
  while (out.length < length) {
    // 62 * 4 = 248: bytes at or above it are rejected so every character is equally likely.
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248) out += BASE62[byte % 62]
      if (out.length === length) break
    }
  }
  return out
}

/** `value` (a non-negative integer) in base62, left-padded with zeros to `width`. */
export function toBase62(value: number, width: number): string {
  let out = ''
  let rest = value
  do {
    out = BASE62[rest % 62] + out
    rest = Math.floor(rest / 62)
  } while (rest > 0)
  return out.padStart(width, '0')
}

export const newStudioId = () => `std_${randomBase62(16)}`
export const newSessionId = () => `ses_${randomBase62(16)}`
export const newKeyId = () => `key_${randomBase62(16)}`

/** A client-sent X-Request-Id is echoed only when it matches this: 1–128 of `[A-Za-z0-9._:-]`. */
export const CLIENT_REQUEST_ID_PATTERN = '^[A-Za-z0-9._:-]{1,128}$'

// Request ids: `req_` + 16 hex. Random bytes are drawn in batches, not one syscall per request,
// and turned into hex once per batch: an id is then a slice of that text.
const POOL_IDS = 512
let pool = ''
let poolOffset = 0

export function newRequestId(): string {
  if (poolOffset >= pool.length) {
    pool = randomBytes(8 * POOL_IDS).toString('hex')
    poolOffset = 0
  }
  const id = `req_${pool.slice(poolOffset, poolOffset + 16)}`
  poolOffset += 16
  return id
}
