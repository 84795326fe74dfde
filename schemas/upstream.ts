import { FormatRegistry, type Static, Type } from '@sinclair/typebox'

/**
 * The contract of the upstream studio service (UPSTREAM_URL), as TypeBox schemas: the gateway
 * validates every answer against them (stores/http.ts) and the reference upstream serves them
 * (examples/reference-upstream.ts). The README's "Upstream studio service" section describes the
 * same contract in prose. Objects may carry extra fields (the upstream can grow additively); the
 * gateway ignores them.
 */

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i

/** RFC 3339 with a time zone; TypeBox's compiled checks know no formats until they are registered. */
const isRfc3339 = (value: string) => RFC3339.test(value) && !Number.isNaN(Date.parse(value))
if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', isRfc3339)

/** Studio ids the contract allows; any other id in a gateway path is not a studio (404, no call). */
export const UPSTREAM_STUDIO_ID = /^[A-Za-z0-9_-]{1,128}$/

const UPSTREAM_PAGE_LIMIT = 100

const StudioId = Type.String({ pattern: UPSTREAM_STUDIO_ID.source })
const Time = Type.String({ format: 'date-time' })
const Title = Type.String({ minLength: 1, maxLength: 140 })
/** The upstream's own pagination token, opaque to the gateway (which signs it into its cursor). */
const Next = Type.Union([Type.String({ minLength: 1, maxLength: 256 }), Type.Null()])

export const UpstreamStudio = Type.Object({
  id: StudioId,
  name: Type.String({ minLength: 1, maxLength: 200 }),
  createdAt: Time,
})
export type UpstreamStudio = Static<typeof UpstreamStudio>

export const UpstreamStream = Type.Object({
  studioId: StudioId,
  status: Type.Union([Type.Literal('offline'), Type.Literal('live')]),
  title: Type.Union([Title, Type.Null()]),
  startedAt: Type.Union([Time, Type.Null()]),
  updatedAt: Time,
})
export type UpstreamStream = Static<typeof UpstreamStream>

export const UpstreamSession = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 128 }),
  studioId: StudioId,
  title: Type.Union([Title, Type.Null()]),
  startedAt: Time,
  endedAt: Time,
})
export type UpstreamSession = Static<typeof UpstreamSession>

export const UpstreamStudioPage = Type.Object({
  data: Type.Array(UpstreamStudio, { maxItems: UPSTREAM_PAGE_LIMIT }),
  next: Next,
})
export type UpstreamStudioPage = Static<typeof UpstreamStudioPage>

export const UpstreamSessionPage = Type.Object({
  data: Type.Array(UpstreamSession, { maxItems: UPSTREAM_PAGE_LIMIT }),
  next: Next,
})
export type UpstreamSessionPage = Static<typeof UpstreamSessionPage>

/** What the gateway sends with POST …/go-live (`title` null when the client gave none). */
export const UpstreamGoLiveBody = Type.Object({ title: Type.Union([Title, Type.Null()]) })

/** The query of both list calls. */
export const UpstreamPageQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: UPSTREAM_PAGE_LIMIT }),
  after: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
})

/** Headers the gateway sends on every call: who the call is for, and the request to correlate with. */
export const UPSTREAM_HEADERS = { account: 'x-account-id', requestId: 'x-request-id' } as const
