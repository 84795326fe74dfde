import { type TSchema, Type } from '@sinclair/typebox'
import { type ErrorCode, errorCatalog, errorCodes } from '../lib/errors.js'
import { StringEnum } from './primitives.js'

export const ErrorCodeName = StringEnum(errorCodes, {
  $id: 'ErrorCode',
  description: 'Stable, machine-readable code. Branch on this, not on the HTTP status or the message.',
})

export const ErrorEnvelope = Type.Object(
  {
    error: Type.Object(
      {
        code: Type.Ref(ErrorCodeName),
        message: Type.String({ description: 'Human-readable explanation. Wording may change.' }),
        requestId: Type.String({ description: 'Equals the X-Request-Id response header.' }),
        requiredScope: Type.Optional(
          Type.String({ description: 'Only on `insufficient_scope`: the scope the key is missing.' }),
        ),
      },
      { additionalProperties: false },
    ),
  },
  { $id: 'ErrorEnvelope', additionalProperties: false, description: 'Every error of /v1 has this shape.' },
)

/** Codes any authenticated /v1 route can answer before its handler runs. */
export const routeBaseErrors = [
  'invalid_request',
  'invalid_key',
  'rate_limited',
  'unavailable',
  'internal',
] as const satisfies readonly ErrorCode[]

/**
 * Marks an error response schema with the codes it can carry. Only the OpenAPI description reads
 * it (per-status code enums and examples); serializers and validators ignore symbol keys, so the
 * hot paths keep serializing the plain envelope.
 */
export const ERROR_CODES = Symbol('errorCodes')

export type ErrorResponseSchema = TSchema & { [ERROR_CODES]: readonly ErrorCode[] }

/** The error codes a route's `response` schema declares, by HTTP status (as a string, as in the schema). */
export function declaredErrorCodes(response: unknown): Map<string, readonly ErrorCode[]> {
  const byStatus = new Map<string, readonly ErrorCode[]>()
  for (const [status, schema] of Object.entries((response ?? {}) as Record<string, unknown>)) {
    const codes = (schema as Partial<ErrorResponseSchema>)[ERROR_CODES]
    if (codes) byStatus.set(status, codes)
  }
  return byStatus
}

/**
 * The error part of a route's `response` schema: one entry per HTTP status the given codes map
 * to, each rendering the envelope. Declaring every error status matters twice: Fastify serializes
 * the body with it, and the OpenAPI description lists it.
 */
export function errorResponses(codes: readonly ErrorCode[]): Record<number, ErrorResponseSchema> {
  const byStatus = new Map<number, ErrorCode[]>()
  for (const code of new Set(codes)) {
    const status = errorCatalog[code].status
    byStatus.set(status, [...(byStatus.get(status) ?? []), code])
  }
  const responses: Record<number, ErrorResponseSchema> = {}
  for (const [status, statusCodes] of [...byStatus].sort(([a], [b]) => a - b)) {
    const schema = Type.Ref(ErrorEnvelope, {
      description: statusCodes.map((code) => `\`${code}\`: ${errorCatalog[code].summary}`).join(' '),
    })
    responses[status] = Object.assign(schema, { [ERROR_CODES]: statusCodes })
  }
  return responses
}
