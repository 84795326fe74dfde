import { type Static, Type } from '@sinclair/typebox'
import { ErrorEnvelope } from './error-envelope.js'

/**
 * The answers of the operators' endpoints. They are not part of the public API description
 * (the routes are hidden from the OpenAPI document; the README documents them), so these schemas
 * have no `$id`: they serialize the answers and stay out of the document's components.
 */

export const Health = Type.Object(
  { status: Type.Literal('ok') },
  { additionalProperties: false, description: 'The process is alive and its event loop answers.' },
)

const DependencyState = Type.Object(
  {
    status: Type.Union([Type.Literal('up'), Type.Literal('down')]),
    latencyMs: Type.Integer({ minimum: 0, description: 'How long the check took.' }),
  },
  { additionalProperties: false },
)

export const DependencyStates = Type.Object(
  {},
  {
    additionalProperties: DependencyState,
    description: 'Each dependency by name (`sqlite`, `postgres`, `redis`, `upstream`), with the result of its check.',
    examples: [{ sqlite: { status: 'up', latencyMs: 0 } }],
  },
)
// TypeBox types an object of additionalProperties as {}; this is what it holds.
export type DependencyStates = Record<string, Static<typeof DependencyState>>

export const Readiness = Type.Object(
  { status: Type.Literal('ready'), dependencies: DependencyStates },
  { additionalProperties: false, description: 'Every dependency answered its check in time.' },
)

/**
 * Not ready: the error envelope, unchanged (`error.code` is `unavailable` and the message names
 * the dependencies that are down), with the per-dependency detail beside it, so a client that
 * reads `error.code` needs nothing new.
 */
export const NotReady = Type.Object(
  { error: ErrorEnvelope.properties.error, dependencies: DependencyStates },
  {
    additionalProperties: false,
    description: "The error envelope (`unavailable`) plus each dependency's state.",
  },
)
