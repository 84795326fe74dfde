import { type Static, Type } from '@sinclair/typebox'
import { scopes } from '../lib/api-keys.js'
import { NextCursor, NoBody, StringEnum, Timestamp } from './primitives.js'

export const Studio = Type.Object(
  {
    id: Type.String({ description: 'Studio id (`std_…`).', examples: ['std_DemoMainStage001'] }),
    name: Type.String({ examples: ['Main Stage'] }),
    createdAt: Timestamp,
  },
  { $id: 'Studio', additionalProperties: false, description: 'A studio of your account.' },
)
export type Studio = Static<typeof Studio>

const StreamStatus = StringEnum(['offline', 'live'], {
  description: '`live` between a go-live and the next go-offline.',
})

export const Stream = Type.Object(
  {
    studioId: Type.String({ examples: ['std_DemoMainStage001'] }),
    status: StreamStatus,
    title: Type.Union([Type.String(), Type.Null()], { description: 'Title of the live broadcast; null when offline.' }),
    startedAt: Type.Union([Timestamp, Type.Null()], { description: 'When the stream went live; null when offline.' }),
    updatedAt: Timestamp,
  },
  { $id: 'Stream', additionalProperties: false, description: 'The live stream of a studio.' },
)
export type Stream = Static<typeof Stream>

export const Session = Type.Object(
  {
    id: Type.String({ description: 'Session id (`ses_…`).', examples: ['ses_3kTqY0m1bZ8wX2cV'] }),
    studioId: Type.String({ examples: ['std_DemoMainStage001'] }),
    title: Type.Union([Type.String(), Type.Null()], { description: 'The title given at go-live, if any.' }),
    startedAt: Timestamp,
    endedAt: Timestamp,
  },
  { $id: 'Session', additionalProperties: false, description: 'A past broadcast: one go-live to go-offline.' },
)
export type Session = Static<typeof Session>

export const StudioList = Type.Object(
  { data: Type.Array(Type.Ref(Studio)), nextCursor: NextCursor },
  { $id: 'StudioList', additionalProperties: false, description: 'A page of studios, oldest first.' },
)

export const SessionList = Type.Object(
  { data: Type.Array(Type.Ref(Session)), nextCursor: NextCursor },
  { $id: 'SessionList', additionalProperties: false, description: 'A page of past sessions, newest first.' },
)

export const ScopeName = StringEnum(scopes, { $id: 'Scope', description: 'A permission an API key can hold.' })

export const ApiKeyInfo = Type.Object(
  {
    id: Type.String({ description: 'Key id (`key_…`).', examples: ['key_8sHq2Lr0PzWm4NcA'] }),
    prefix: Type.String({
      description: 'The first characters of the secret, to recognise it.',
      examples: ['sk_live_Ab3d'],
    }),
    accountId: Type.String({ examples: ['acct_demo'] }),
    scopes: Type.Array(Type.Ref(ScopeName)),
    expiresAt: Type.Union([Timestamp, Type.Null()], { description: 'null when the key does not expire.' }),
  },
  { $id: 'ApiKey', additionalProperties: false, description: 'The key that made the call. Never the secret.' },
)

export const GoLiveBody = Type.Union(
  [
    Type.Object(
      {
        title: Type.Optional(
          // NUL is the one character no store can keep (PostgreSQL text refuses it).
          Type.String({
            minLength: 1,
            maxLength: 140,
            pattern: '^[^\\u0000]*$',
            description: 'Title of the broadcast; any text but the NUL character.',
            // What the explorer pre-fills (it would otherwise invent a string from the pattern).
            examples: ['Friday Q&A: the new studio tour'],
          }),
        ),
      },
      { additionalProperties: false },
    ),
    Type.Null(),
  ],
  { description: 'Optional. An empty body is accepted.' },
)

/** go-offline takes no body. */
export const GoOfflineBody = NoBody
