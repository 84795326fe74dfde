import { createHash } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { randomBase62, toBase62 } from './ids.js'

/**
 * API key format: `sk_live_` + 32 random base62 characters + a 6-character base62 CRC-32 of those
 * 32. The checksum lets a typo or a made-up key be rejected without a store lookup.
 */
export const KEY_PREFIX = 'sk_live_'
const BODY_LENGTH = 32
const CHECKSUM_LENGTH = 6
const KEY_LENGTH = KEY_PREFIX.length + BODY_LENGTH + CHECKSUM_LENGTH
const KEY_SHAPE = /^sk_live_[0-9A-Za-z]{38}$/
/** How many characters of a key are kept and shown to identify it (`sk_live_` + 4). */
const DISPLAY_PREFIX_LENGTH = KEY_PREFIX.length + 4

export const scopes = ['studio:read', 'stream:read', 'stream:golive', 'keys:read', 'keys:write'] as const
export type Scope = (typeof scopes)[number]

export const isScope = (value: string): value is Scope => (scopes as readonly string[]).includes(value)

const checksumOf = (body: string) => toBase62(crc32(body), CHECKSUM_LENGTH)

export function generateKeySecret(): string {
  const body = randomBase62(BODY_LENGTH)
  return `${KEY_PREFIX}${body}${checksumOf(body)}`
}

/** True when `secret` has the key shape and its checksum matches. */
export function isWellFormedKey(secret: string): boolean {
  if (secret.length !== KEY_LENGTH || !KEY_SHAPE.test(secret)) return false
  const body = secret.slice(KEY_PREFIX.length, KEY_PREFIX.length + BODY_LENGTH)
  return secret.endsWith(checksumOf(body))
}

/** What is stored instead of the secret: its SHA-256, hex. */
export const hashKey = (secret: string) => createHash('sha256').update(secret).digest('hex')

export const displayPrefix = (secret: string) => secret.slice(0, DISPLAY_PREFIX_LENGTH)

/** Anything shaped like one of our keys, so it can be scrubbed from logs and messages. */
const KEY_LIKE = /sk_live_[0-9A-Za-z]*/g
const PERCENT = /%([0-9A-Fa-f]{2})/g

/** Percent-decoding that never throws: a sequence that is not an escape stays as it is. */
const percentDecode = (text: string) =>
  text.replace(PERCENT, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))

/**
 * `text` with every key-shaped value replaced by `sk_live_[redacted]`, including keys written
 * percent-encoded (`sk%5Flive%5F…`, or encoded twice): when a decoding of the text holds a key,
 * the decoded text is what is returned, scrubbed.
 */
export function redactKeys(text: string): string {
  let current = text
  // Three rounds cover a key encoded up to three times; each round only shortens the text.
  for (let round = 0; round < 4; round++) {
    if (current.includes(KEY_PREFIX)) return current.replace(KEY_LIKE, `${KEY_PREFIX}[redacted]`)
    if (round === 3 || !current.includes('%')) break
    const decoded = percentDecode(current)
    if (decoded === current) break
    current = decoded
  }
  return text
}
