import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { studioNotFound } from '../../../lib/errors.js'
import { callContextOf } from '../../../pipeline/authentication.js'
import { errorResponses, routeBaseErrors } from '../../../schemas/error-envelope.js'
import { NoQuery, StudioIdParams, WriteHeaders } from '../../../schemas/primitives.js'
import { GoLiveBody, GoOfflineBody, Stream } from '../../../schemas/resources.js'

const writeErrors = errorResponses([
  ...routeBaseErrors,
  'insufficient_scope',
  'not_found',
  'write_disabled',
  'bad_gateway',
])

const stream: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/studios/:studioId/stream',
    {
      config: { scope: 'stream:read' },
      schema: {
        operationId: 'getStream',
        summary: 'Get the live stream of a studio',
        description: 'Whether the studio is live, since when, and under which title.',
        tags: ['stream'],
        params: StudioIdParams,
        querystring: NoQuery,
        response: {
          200: Type.Ref(Stream),
          ...errorResponses([...routeBaseErrors, 'insufficient_scope', 'not_found', 'bad_gateway']),
        },
      },
    },
    async (request) => {
      const found = await app.studios.getStream(callContextOf(request), request.params.studioId)
      if (!found) throw studioNotFound()
      return found
    },
  )

  app.post(
    '/studios/:studioId/stream/go-live',
    {
      config: { scope: 'stream:golive', write: true, idempotent: true },
      schema: {
        operationId: 'goLive',
        summary: 'Go live',
        description:
          'Starts a broadcast and opens a session. Idempotent: while already live it answers 200 with the unchanged stream. Send an `Idempotency-Key` to retry safely: a retry gets the first answer back, even after a go-offline in between.',
        tags: ['stream'],
        params: StudioIdParams,
        querystring: NoQuery,
        headers: WriteHeaders,
        body: GoLiveBody,
        response: { 200: Type.Ref(Stream), ...writeErrors },
      },
    },
    async (request) => {
      const title = request.body?.title ?? null
      const live = await app.studios.goLive(callContextOf(request), request.params.studioId, { title })
      if (!live) throw studioNotFound()
      return live
    },
  )

  app.post(
    '/studios/:studioId/stream/go-offline',
    {
      config: { scope: 'stream:golive', write: true, idempotent: true },
      schema: {
        operationId: 'goOffline',
        summary: 'Go offline',
        description:
          'Ends the broadcast and closes its session. Idempotent: while already offline it answers 200 with the unchanged stream. Send an `Idempotency-Key` to retry safely: a retry gets the first answer back.',
        tags: ['stream'],
        params: StudioIdParams,
        querystring: NoQuery,
        headers: WriteHeaders,
        body: GoOfflineBody,
        response: { 200: Type.Ref(Stream), ...writeErrors },
      },
    },
    async (request) => {
      const offline = await app.studios.goOffline(callContextOf(request), request.params.studioId)
      if (!offline) throw studioNotFound()
      return offline
    },
  )
}

export default stream
