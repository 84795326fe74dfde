import { type Static, Type } from '@sinclair/typebox'
import { modes, scopes } from '../lib/api-keys.js'
import { NextCursor, StringEnum, Timestamp } from './primitives.js'
import { ScopeName } from './resources.js'

/** A key id in a path: opaque to clients, any value that is not a key of the caller's account is 404. */
export const KeyIdParams = Type.Object(
  {
    keyId: Type.String({
      description: 'The id of a key of your account (`key_…`).',
      examples: ['key_8sHq2Lr0PzWm4NcA'],
    }),
  },
  { additionalProperties: false },
)

/** At most a day: the windows the limiter keeps counters for. */
export const MAX_WINDOW_SECONDS = 86_400
/** 7 days. */
export const MAX_GRACE_SECONDS = 7 * 86_400
export const DEFAULT_GRACE_SECONDS = 86_400

/** A policy as a request gives it: bounded like the command line's (whole seconds, at most a day here). */
const RateLimitPolicy = Type.Object(
  {
    max: Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: 'Requests allowed in any window.' }),
    windowSeconds: Type.Integer({ minimum: 1, maximum: MAX_WINDOW_SECONDS, description: 'The window, in seconds.' }),
  },
  { additionalProperties: false, description: 'At most `max` requests in any `windowSeconds`.' },
)

const RateLimitPolicies = Type.Array(RateLimitPolicy, {
  minItems: 1,
  maxItems: 5,
  description: "The key's own rate limits (the strictest decides), each window once.",
})

/** A policy as a key holds it: the command line may have given it a longer window than a request may. */
const HeldRateLimitPolicy = Type.Object(
  {
    max: Type.Integer({ minimum: 1, description: 'Requests allowed in any window.' }),
    windowSeconds: Type.Integer({ minimum: 1, description: 'The window, in seconds.' }),
  },
  { additionalProperties: false, description: 'At most `max` requests in any `windowSeconds`.' },
)

const KeyName = Type.String({
  minLength: 1,
  maxLength: 100,
  // NUL is the one character no store can keep (PostgreSQL text refuses it).
  pattern: '^[^\\u0000]*$',
  description: 'A name for people, 1–100 characters.',
  examples: ['billing worker'],
})

const keyFields = {
  id: Type.String({ description: 'Key id (`key_…`).', examples: ['key_8sHq2Lr0PzWm4NcA'] }),
  mode: StringEnum(modes, {
    description:
      '`live`, or `test` (`sk_test_`, sees the sandbox only). A key lists and manages keys of its own mode only; a live key may mint a test key, a test key never mints a live one.',
  }),
  name: Type.Union([Type.String(), Type.Null()], { description: 'null for keys minted before keys had names.' }),
  prefix: Type.String({
    description: 'The first characters of the secret, to recognise it.',
    examples: ['sk_live_Ab3d'],
  }),
  scopes: Type.Array(Type.Ref(ScopeName)),
  status: StringEnum(['active', 'revoked', 'expired'], { description: 'Whether the key is accepted now.' }),
  createdAt: Timestamp,
  expiresAt: Type.Union([Timestamp, Type.Null()], {
    description: 'null when the key does not expire. A rolled key expires when its grace period ends.',
  }),
  revokedAt: Type.Union([Timestamp, Type.Null()]),
  lastUsedAt: Type.Union([Timestamp, Type.Null()], {
    description: 'Recorded at most once a minute per key: a recent use may not show yet.',
  }),
  rateLimits: Type.Union([Type.Array(HeldRateLimitPolicy), Type.Null()], {
    description: "The key's own rate limits (the strictest decides); null: the gateway's default.",
  }),
  createdBy: Type.String({
    description: 'The id of the key that created this one over the API, or `cli` (the command line or the demo seed).',
    examples: ['key_3Xq0PzWm4NcA8sHq', 'cli'],
  }),
  replacedBy: Type.Union([Type.String(), Type.Null()], {
    description:
      'The key that replaced this one when it was rolled (this one then expires at the end of the grace period); null until then.',
  }),
}

export const ApiKeyDetails = Type.Object(keyFields, {
  $id: 'ApiKeyDetails',
  additionalProperties: false,
  description: 'A key of your account. Never its secret.',
})
export type ApiKeyDetails = Static<typeof ApiKeyDetails>

export const NewApiKey = Type.Object(
  {
    ...keyFields,
    secret: Type.String({
      description:
        'The secret: shown in this answer only (and to a retry with the same Idempotency-Key). Store it now.',
      examples: ['sk_live_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf'],
    }),
  },
  { $id: 'NewApiKey', additionalProperties: false, description: 'A key just minted, with its secret, once.' },
)

export const ApiKeyList = Type.Object(
  { data: Type.Array(Type.Ref(ApiKeyDetails)), nextCursor: NextCursor },
  { $id: 'ApiKeyList', additionalProperties: false, description: 'A page of keys, oldest first.' },
)

export const CreateKeyBody = Type.Object(
  {
    name: KeyName,
    scopes: Type.Array(Type.Ref(ScopeName), {
      minItems: 1,
      maxItems: scopes.length,
      uniqueItems: true,
      description: 'A subset of the calling key’s scopes.',
    }),
    expiresAt: Type.Optional(
      Type.Union([Timestamp, Type.Null()], {
        description:
          'In the future, and no later than the calling key’s own expiry. Omitted or null: the calling key’s expiry (none for a key without one).',
      }),
    ),
    rateLimits: Type.Optional(
      Type.Union([RateLimitPolicies, Type.Null()], {
        description:
          'No more than the calling key’s own limits allow. Omitted or null: the calling key’s own policies (the gateway’s default if it has none).',
      }),
    ),
    mode: Type.Optional(
      StringEnum(modes, {
        description:
          'Omitted: the calling key’s own mode. A live key may mint a `test` key (`sk_test_…`, the account’s sandbox; the sandbox gets two studios if it has none); a test key asking for `live` is `400 invalid_request`.',
      }),
    ),
  },
  { additionalProperties: false },
)
export type CreateKeyBody = Static<typeof CreateKeyBody>

export const RollKeyBody = Type.Union(
  [
    Type.Object(
      {
        gracePeriod: Type.Optional(
          Type.Integer({
            minimum: 0,
            maximum: MAX_GRACE_SECONDS,
            default: DEFAULT_GRACE_SECONDS,
            description:
              'Seconds the old secret keeps working: 0 (refused at once) to 604800 (7 days); 86400 by default.',
          }),
        ),
      },
      { additionalProperties: false },
    ),
    Type.Null(),
  ],
  { description: 'Optional. An empty body rolls with the default grace period (24 h).' },
)
