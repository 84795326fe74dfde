import { type SchemaOptions, Type } from '@sinclair/typebox'
import { IDEMPOTENCY_KEY_PATTERN } from '../lib/idempotency.js'

/** RFC 3339 UTC timestamps, as every time in the API is written. */
export const Timestamp = Type.String({
  format: 'date-time',
  description: 'RFC 3339 timestamp in UTC.',
  examples: ['2026-11-25T09:30:00.000Z'],
})

/**
 * A studio id in a path. Ids are opaque to clients: any value that does not name a studio of
 * the caller's account answers 404, whatever its shape, so no pattern is enforced here.
 */
const StudioIdParam = Type.String({
  description: 'The id of a studio of your account (`std_…`).',
  examples: ['std_DemoMainStage001'],
})

export const StudioIdParams = Type.Object({ studioId: StudioIdParam }, { additionalProperties: false })

export const DEFAULT_PAGE_LIMIT = 20

const Limit = Type.Integer({
  minimum: 1,
  maximum: 100,
  default: DEFAULT_PAGE_LIMIT,
  description: 'How many items to return, 1–100.',
})

const Cursor = Type.String({
  minLength: 1,
  maxLength: 512,
  description: 'Opaque cursor from the `nextCursor` of a previous page of the same list.',
})

export const PageQuery = Type.Object(
  { limit: Type.Optional(Limit), cursor: Type.Optional(Cursor) },
  { additionalProperties: false },
)

export const NextCursor = Type.Union([Type.String(), Type.Null()], {
  description: 'Pass it as `cursor` to get the next page; null on the last page.',
})

/**
 * The request headers of a write: an optional Idempotency-Key. Other headers are not this
 * schema's business (additional properties allowed). In lower case, as Node gives header names:
 * Fastify leaves the schema as it is with our own validator compiler.
 */
export const WriteHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      pattern: IDEMPOTENCY_KEY_PATTERN,
      description:
        'Makes the call safe to retry: 1–255 visible ASCII characters (a UUID per call, say), the same on each attempt. The first answer is stored for 24 h and replayed (with `Idempotent-Replayed: true`) to a retry with the same key; the same key with a different request is `400 invalid_request`.',
      // No example: the explorer pre-fills one, and a key shared by go-live and go-offline turns
      // every later call of the other into a 400 for 24 h. A fresh key per call is the only safe one.
    }),
  ),
})

/** Routes without query parameters still declare it, so that an unknown one is refused. */
export const NoQuery = Type.Object({}, { additionalProperties: false })

/**
 * One of a fixed set of strings, as `{ type: 'string', enum }`: it reads as one enum in the
 * OpenAPI and in generated client types (a union of literals becomes an `anyOf` of single values).
 */
export const StringEnum = <T extends string>(values: readonly T[], options: SchemaOptions = {}) =>
  Type.Unsafe<T>({ ...options, type: 'string', enum: [...values] })

/** A POST that takes no body; an empty JSON body (or `{}`) is accepted as none. */
export const NoBody = Type.Union([Type.Object({}, { additionalProperties: false }), Type.Null()], {
  description: 'None. An empty body is accepted.',
})
