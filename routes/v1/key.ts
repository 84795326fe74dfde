import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { callerOf } from '../../pipeline/authentication.js'
import { errorResponses, routeBaseErrors } from '../../schemas/error-envelope.js'
import { NoQuery } from '../../schemas/primitives.js'
import { ApiKeyInfo } from '../../schemas/resources.js'

const key: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/key',
    {
      schema: {
        operationId: 'getKey',
        summary: 'Describe the calling key',
        description: 'Any valid key may call it. Never returns the secret.',
        tags: ['keys'],
        querystring: NoQuery,
        response: { 200: Type.Ref(ApiKeyInfo), ...errorResponses(routeBaseErrors) },
      },
    },
    async (request) => {
      const { id, prefix, accountId, scopes, expiresAt } = callerOf(request)
      return { id, prefix, accountId, scopes: [...scopes], expiresAt }
    },
  )
}

export default key
