import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { studioNotFound } from '../../../lib/errors.js'
import { fetchPage, type ListPage } from '../../../lib/pagination.js'
import { callContextOf } from '../../../pipeline/authentication.js'
import { errorResponses, routeBaseErrors } from '../../../schemas/error-envelope.js'
import { NoQuery, PageQuery, StudioIdParams } from '../../../schemas/primitives.js'
import { Studio, StudioList } from '../../../schemas/resources.js'

/** A list of the caller's own account always exists. */
const orEmptyList = (page: ListPage<Studio> | undefined): ListPage<Studio> => page ?? { data: [], nextCursor: null }

function studioOrNotFound(studio: Studio | undefined): Studio {
  if (!studio) throw studioNotFound()
  return studio
}

const studios: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/studios',
    {
      config: { scope: 'studio:read' },
      schema: {
        operationId: 'listStudios',
        summary: 'List the studios of your account',
        description: 'Oldest first. Follow `nextCursor` for the next page.',
        tags: ['studios'],
        querystring: PageQuery,
        response: {
          200: Type.Ref(StudioList),
          ...errorResponses([...routeBaseErrors, 'insufficient_scope', 'bad_gateway']),
        },
      },
    },
    (request) => {
      const ctx = callContextOf(request)
      const page = fetchPage(
        app.cursors,
        { list: 'studios', accountId: ctx.accountId, mode: ctx.mode },
        request.query,
        (pageRequest) => app.studios.listStudios(ctx, pageRequest),
      )
      return page instanceof Promise ? page.then(orEmptyList) : orEmptyList(page)
    },
  )

  app.get(
    '/studios/:studioId',
    {
      config: { scope: 'studio:read' },
      schema: {
        operationId: 'getStudio',
        summary: 'Get a studio',
        description: 'A studio of another account answers 404, exactly as a missing one.',
        tags: ['studios'],
        params: StudioIdParams,
        querystring: NoQuery,
        response: {
          200: Type.Ref(Studio),
          ...errorResponses([...routeBaseErrors, 'insufficient_scope', 'not_found', 'bad_gateway']),
        },
      },
    },
    (request) => {
      // A studio found before answers at once: no promise on the hot read.
      const found = app.studios.getStudio(callContextOf(request), request.params.studioId)
      return found instanceof Promise ? found.then(studioOrNotFound) : studioOrNotFound(found)
    },
  )
}

export default studios
