import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { bearerToken } from '../lib/bearer.js'
import { invalidKey } from '../lib/errors.js'
import { errorResponses } from '../schemas/error-envelope.js'
import { opsRouteOptions } from './health.js'

const digest = (text: string) => createHash('sha256').update(text).digest()

/**
 * `/metrics`: the Prometheus text exposition of `app.metrics` and the process metrics. With
 * METRICS_TOKEN set it needs `Authorization: Bearer <token>` (401 invalid_key otherwise).
 */
const metrics: FastifyPluginAsyncTypebox = async (app) => {
  const token = app.config.metricsToken
  // Digests have the same length whatever was sent, so the comparison is constant-time.
  const expected = token === undefined ? undefined : digest(token)

  app.get(
    '/metrics',
    {
      ...opsRouteOptions,
      onRequest: (request, _reply, done) => {
        if (expected === undefined) return done()
        const sent = bearerToken(request.headers.authorization)
        if (sent !== undefined && timingSafeEqual(digest(sent), expected)) return done()
        request.log.warn('metrics requested without the right token')
        done(
          invalidKey(
            sent === undefined
              ? '/metrics needs the metrics token: Authorization: Bearer <METRICS_TOKEN>'
              : 'the metrics token is wrong',
          ),
        )
      },
      schema: {
        operationId: 'getMetrics',
        summary: 'Prometheus metrics',
        description:
          'Prometheus text format (version 0.0.4). When the gateway runs with METRICS_TOKEN, send it as ' +
          '`Authorization: Bearer <token>`; no API key.',
        // Operators' endpoints, documented in the README (Operations), not in the public API description.
        hide: true,
        response: {
          200: {
            description: 'The metrics, in the Prometheus text exposition format.',
            content: { 'text/plain': { schema: Type.String() } },
          },
          ...errorResponses(['invalid_key', 'internal']),
        },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', 'no-store')
      reply.type(app.metrics.contentType)
      return app.metrics.render()
    },
  )
}

export default metrics
