import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { fetchPage } from '../../lib/pagination.js'
import { callerOf } from '../../pipeline/authentication.js'
import { errorResponses, routeBaseErrors } from '../../schemas/error-envelope.js'
import {
  ApiKeyDetails,
  ApiKeyList,
  CreateKeyBody,
  DEFAULT_GRACE_SECONDS,
  KeyIdParams,
  NewApiKey,
  RollKeyBody,
} from '../../schemas/keys.js'
import { NoBody, NoQuery, PageQuery, WriteHeaders } from '../../schemas/primitives.js'

const keyErrors = errorResponses([...routeBaseErrors, 'insufficient_scope', 'not_found'])

/**
 * Self-serve key management. Not behind the write gate (WRITES_ENABLED gates the streaming write
 * surface only): a consumer must be able to revoke a leaked key, or roll it, whatever the state of
 * the preview. See docs/keys.md.
 */
const keys: FastifyPluginAsyncTypebox = async (app) => {
  const { keyManagement } = app

  app.post(
    '/keys',
    {
      config: { scope: 'keys:write', grantsScopes: true, idempotent: true },
      schema: {
        operationId: 'createKey',
        summary: 'Create a key',
        description:
          'Mints a key of your account with a subset of the calling key’s scopes, limits no looser than its own, and an expiry no later than its own. The answer carries the secret, once (`Cache-Control: no-store`). A scope the calling key lacks is `403 insufficient_scope` naming it. Send an `Idempotency-Key` to retry safely: a retry with the same key gets the same answer, secret included (stored sealed, never in clear).',
        tags: ['keys'],
        querystring: NoQuery,
        headers: WriteHeaders,
        body: CreateKeyBody,
        response: {
          201: Type.Ref(NewApiKey),
          ...errorResponses([...routeBaseErrors, 'insufficient_scope']),
        },
      },
    },
    async (request, reply) => {
      const created = await keyManagement.create(callerOf(request), request.body)
      return reply.code(201).send(created)
    },
  )

  app.get(
    '/keys',
    {
      config: { scope: 'keys:read' },
      schema: {
        operationId: 'listKeys',
        summary: 'List the keys of your account',
        description:
          'Oldest first, revoked and expired keys included. Never a secret. Follow `nextCursor` for the next page.',
        tags: ['keys'],
        querystring: PageQuery,
        response: {
          200: Type.Ref(ApiKeyList),
          ...errorResponses([...routeBaseErrors, 'insufficient_scope']),
        },
      },
    },
    async (request) => {
      const caller = callerOf(request)
      const page = await fetchPage(
        app.cursors,
        { list: 'keys', accountId: caller.accountId, mode: caller.mode },
        request.query,
        (pageRequest) => keyManagement.list(caller, pageRequest),
      )
      return page ?? { data: [], nextCursor: null }
    },
  )

  app.get(
    '/keys/:keyId',
    {
      config: { scope: 'keys:read' },
      schema: {
        operationId: 'getKeyById',
        summary: 'Get a key',
        description: 'Never its secret. A key of another account answers 404, exactly as a missing one.',
        tags: ['keys'],
        params: KeyIdParams,
        querystring: NoQuery,
        response: { 200: Type.Ref(ApiKeyDetails), ...keyErrors },
      },
    },
    async (request) => keyManagement.get(callerOf(request), request.params.keyId),
  )

  app.post(
    '/keys/:keyId/roll',
    {
      config: { scope: 'keys:write', grantsScopes: true, idempotent: true },
      schema: {
        operationId: 'rollKey',
        summary: 'Roll a key',
        description:
          'Mints a successor with the same name, scopes, rate limits and expiry, and answers it with its secret, once. The old secret keeps working for `gracePeriod` seconds (24 h by default, 0 for at once, at most 7 days), then expires; every instance knows within a second. A key may roll itself; the calling key must hold every scope of the key it rolls. Only an active key that was not rolled before can be rolled (`400` otherwise). Send an `Idempotency-Key` to retry safely.',
        tags: ['keys'],
        params: KeyIdParams,
        querystring: NoQuery,
        headers: WriteHeaders,
        body: RollKeyBody,
        response: { 201: Type.Ref(NewApiKey), ...keyErrors },
      },
    },
    async (request, reply) => {
      const grace = request.body?.gracePeriod ?? DEFAULT_GRACE_SECONDS
      const rolled = await keyManagement.roll(callerOf(request), request.params.keyId, grace)
      return reply.code(201).send(rolled)
    },
  )

  app.post(
    '/keys/:keyId/revoke',
    {
      config: { scope: 'keys:write', grantsScopes: true },
      schema: {
        operationId: 'revokeKey',
        summary: 'Revoke a key',
        description:
          'Refused from this moment: every instance knows within a second. Revoking a revoked key answers it unchanged. A key may revoke itself; the calling key must hold every scope of the key it revokes.',
        tags: ['keys'],
        params: KeyIdParams,
        querystring: NoQuery,
        body: NoBody,
        response: { 200: Type.Ref(ApiKeyDetails), ...keyErrors },
      },
    },
    async (request) => keyManagement.revoke(callerOf(request), request.params.keyId),
  )
}

export default keys
