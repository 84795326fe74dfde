import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { studioNotFound } from '../../../lib/errors.js'
import { fetchPage } from '../../../lib/pagination.js'
import { callContextOf } from '../../../pipeline/authentication.js'
import { errorResponses, routeBaseErrors } from '../../../schemas/error-envelope.js'
import { PageQuery, StudioIdParams } from '../../../schemas/primitives.js'
import { SessionList } from '../../../schemas/resources.js'

const sessions: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/studios/:studioId/sessions',
    {
      config: { scope: 'stream:read' },
      schema: {
        operationId: 'listSessions',
        summary: 'List the past broadcasts of a studio',
        description: 'Ended sessions, newest first. Follow `nextCursor` for the next page.',
        tags: ['stream'],
        params: StudioIdParams,
        querystring: PageQuery,
        response: {
          200: Type.Ref(SessionList),
          ...errorResponses([...routeBaseErrors, 'insufficient_scope', 'not_found', 'bad_gateway']),
        },
      },
    },
    async (request) => {
      const ctx = callContextOf(request)
      const { studioId } = request.params
      const page = await fetchPage(
        app.cursors,
        { list: 'sessions', accountId: ctx.accountId, mode: ctx.mode, parentId: studioId },
        request.query,
        (pageRequest) => app.studios.listSessions(ctx, studioId, pageRequest),
      )
      if (!page) throw studioNotFound()
      return page
    },
  )
}

export default sessions
