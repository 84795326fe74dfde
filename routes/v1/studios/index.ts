import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { studioNotFound } from '../../../lib/errors.js'
import { createKeptJson } from '../../../lib/kept-json.js'
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
  // A page or a studio the store answers from memory is serialized once (lib/kept-json.ts).
  const sendPage = createKeptJson<readonly Studio[]>()
  const sendStudio = createKeptJson<Studio>()

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
    (request, reply) => {
      const ctx = callContextOf(request)
      const page = fetchPage(
        app.cursors,
        { list: 'studios', accountId: ctx.accountId, mode: ctx.mode },
        request.query,
        (pageRequest) => app.studios.listStudios(ctx, pageRequest),
      )
      if (page instanceof Promise) return page.then(orEmptyList)
      const list = orEmptyList(page)
      sendPage(reply, list.data, list, list.nextCursor)
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
    (request, reply) => {
      // A studio found before answers at once: no promise on the hot read, and its JSON kept.
      const found = app.studios.getStudio(callContextOf(request), request.params.studioId)
      if (found instanceof Promise) return found.then(studioOrNotFound)
      sendStudio(reply, studioOrNotFound(found))
    },
  )
}

export default studios
