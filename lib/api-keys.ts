import { createHash } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { randomBase62, toBase62 } from './ids.js'

/**
 * API key format: `sk_live_` (or `sk_test_` for a test key, which sees only its account's sandbox)
 * + 32 random base62 characters + a 6-character base62 CRC-32 of those 32. The checksum lets a
 * typo or a made-up key be rejected without a store lookup.
 */
export const modes = ['live', 'test'] as const
/** Live data, or the account's sandbox (docs/test-mode.md). */
export type Mode = (typeof modes)[number]

export const isMode = (value: string): value is Mode => (modes as readonly string[]).includes(value)

const KEY_PREFIX = 'sk_live_'
const TEST_KEY_PREFIX = 'sk_test_'
const prefixOf = (mode: Mode) => (mode === 'test' ? TEST_KEY_PREFIX : KEY_PREFIX)
const BODY_LENGTH = 32
const CHECKSUM_LENGTH = 6
const KEY_LENGTH = KEY_PREFIX.length + BODY_LENGTH + CHECKSUM_LENGTH
const KEY_SHAPE = /^sk_(?:live|test)_[0-9A-Za-z]{38}$/
/** How many characters of a key are kept and shown to identify it (`sk_live_` + 4). */
const DISPLAY_PREFIX_LENGTH = KEY_PREFIX.length + 4

export const scopes = ['studio:read', 'stream:read', 'stream:golive', 'keys:read', 'keys:write'] as const
export type Scope = (typeof scopes)[number]

export const isScope = (value: string): value is Scope => (scopes as readonly string[]).includes(value)

const checksumOf = (body: string) => toBase62(crc32(body), CHECKSUM_LENGTH)

export function generateKeySecret(mode: Mode = 'live'): string {
  const body = randomBase62(BODY_LENGTH)
  return `${prefixOf(mode)}${body}${checksumOf(body)}`
}

/** The mode a secret's prefix names (a test key starts `sk_test_`). */
export const modeOfSecret = (secret: string): Mode => (secret.startsWith(TEST_KEY_PREFIX) ? 'test' : 'live')

/** True when `secret` has the key shape and its checksum matches. */
export function isWellFormedKey(secret: string): boolean {
  if (secret.length !== KEY_LENGTH || !KEY_SHAPE.test(secret)) return false
  const body = secret.slice(KEY_PREFIX.length, KEY_PREFIX.length + BODY_LENGTH)
  return secret.endsWith(checksumOf(body))
}

/** What is stored instead of the secret: its SHA-256, hex. */
export const hashKey = (secret: string) => createHash('sha256').update(secret).digest('hex')

export const displayPrefix = (secret: string) => secret.slice(0, DISPLAY_PREFIX_LENGTH)

/** Anything shaped like one of our keys, live or test, so it can be scrubbed from logs and messages. */
const KEY_LIKE = /sk_(live|test)_[0-9A-Za-z]*/g
/** True when `text` holds a key's prefix, live or test. */
export const holdsKeyPrefix = (text: string) => text.includes(KEY_PREFIX) || text.includes(TEST_KEY_PREFIX)
const PERCENT = /%([0-9A-Fa-f]{2})/g

/** Percent-decoding that never throws: a sequence that is not an escape stays as it is. */
const percentDecode = (text: string) =>
  text.replace(PERCENT, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))

/**
 * `text` with every key-shaped value replaced by `sk_live_[redacted]` (`sk_test_[redacted]`), including keys written
 * percent-encoded (`sk%5Flive%5F…`, or encoded twice): when a decoding of the text holds a key,
 * the decoded text is what is returned, scrubbed (a raw key beside an encoded one included).
 */
export function redactKeys(text: string): string {
  let current = text
  let scrubbed = text
  // Three rounds cover a key encoded up to three times, beside keys written as they are.
  for (let round = 0; round < 4; round++) {
    if (holdsKeyPrefix(current)) {
      current = current.replace(KEY_LIKE, 'sk_$1_[redacted]')
      scrubbed = current
    }
    if (round === 3 || !current.includes('%')) break
    const decoded = percentDecode(current)
    if (decoded === current) break
    current = decoded
  }
  return scrubbed
}
