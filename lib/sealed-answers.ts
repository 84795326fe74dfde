import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto'

/**
 * How an Idempotency-Key record keeps its answer without keeping a secret in clear: the answer of
 * `POST /v1/keys` holds a new key's secret, and a retry must get it back.
 *
 * - The record is found by HMAC-SHA-256(server secret, Idempotency-Key): the key sent by the
 *   client is never stored.
 * - The answer is sealed with AES-256-GCM under a key derived (HKDF-SHA-256) from the client's
 *   Idempotency-Key, salted with the server secret, and bound to the API key that sent it.
 *
 * A stored row alone (a backup, a read of the table) holds neither the Idempotency-Key nor a way
 * to open the answer; the client that sends the same Idempotency-Key again can. The server secret
 * (a setting in the store, like the cursor secret) only keeps a guessable Idempotency-Key from
 * being tried against the rows offline.
 */
const INFO = 'studio-gateway idempotent answer v1'
const IV_BYTES = 12
const TAG_BYTES = 16
const FORMAT = 'v1.'

export interface AnswerSealer {
  /** What the record is stored under instead of the Idempotency-Key. */
  lookupKeyOf(idempotencyKey: string): string
  /** The derived key that seals this request's answer (kept in memory while the request runs). */
  sealingKeyOf(idempotencyKey: string): Buffer
  seal(sealingKey: Buffer, apiKeyId: string, answer: string): string
  /** The answer, or undefined when it cannot be opened with this key (not sealed by it, altered). */
  open(sealingKey: Buffer, apiKeyId: string, sealed: string): string | undefined
}

export function createAnswerSealer(serverSecret: Buffer): AnswerSealer {
  return {
    lookupKeyOf: (idempotencyKey) => createHmac('sha256', serverSecret).update(idempotencyKey).digest('hex'),

    sealingKeyOf: (idempotencyKey) => Buffer.from(hkdfSync('sha256', idempotencyKey, serverSecret, INFO, 32)),

    seal(sealingKey, apiKeyId, answer) {
      const iv = randomBytes(IV_BYTES)
      const cipher = createCipheriv('aes-256-gcm', sealingKey, iv)
      cipher.setAAD(Buffer.from(apiKeyId))
      const sealed = Buffer.concat([cipher.update(answer, 'utf8'), cipher.final()])
      return FORMAT + Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64url')
    },

    open(sealingKey, apiKeyId, sealed) {
      if (!sealed.startsWith(FORMAT)) return undefined
      const bytes = Buffer.from(sealed.slice(FORMAT.length), 'base64url')
      if (bytes.length < IV_BYTES + TAG_BYTES) return undefined
      try {
        const decipher = createDecipheriv('aes-256-gcm', sealingKey, bytes.subarray(0, IV_BYTES))
        decipher.setAAD(Buffer.from(apiKeyId))
        decipher.setAuthTag(bytes.subarray(IV_BYTES, IV_BYTES + TAG_BYTES))
        return Buffer.concat([decipher.update(bytes.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8')
      } catch {
        return undefined
      }
    },
  }
}
