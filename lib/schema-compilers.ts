import { SerializerSelector } from '@fastify/fast-json-stringify-compiler'
import Ajv, { type Options as AjvOptions } from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifyServerOptions } from 'fastify'
import { sharedSchemas } from '../schemas/index.js'

/**
 * What turns the route schemas into request validators and response serializers, kept for the
 * life of the process. The schemas are module constants, so a second app built in the same
 * process (the test suite builds hundreds, the OpenAPI generator one more) reuses what the first
 * compiled, where Fastify's defaults compile everything again for every app (about a tenth of a
 * second each). The server builds one app: it compiles each distinct schema once (the error
 * envelopes, the same on every route, once in all).
 */

// Ajv as the design wants it: unknown fields are rejected, not stripped. Query strings and path
// parameters are text and need coercion (`limit=20` → 20); bodies are JSON and must not be coerced
// (`{"title": 5}` is an error, not "5").
const ajvBase: AjvOptions = { removeAdditional: false, useDefaults: true, allErrors: false, strict: false }

/** The two Ajv instances, one for JSON bodies and one for text (query strings, path parameters). */
const validators = (() => {
  const text = addFormats.default(new Ajv.default({ ...ajvBase, coerceTypes: 'array' }))
  const body = addFormats.default(new Ajv.default({ ...ajvBase, coerceTypes: false }))
  for (const schema of sharedSchemas) {
    text.addSchema(schema)
    body.addSchema(schema)
  }
  return { text, body }
})()

type Validator = ReturnType<Ajv.default['compile']>
/** Validators by HTTP part and schema text: route plugins build their schema objects anew for each app. */
const validatorsByText = new Map<string, Validator>()

/** The validator compiler every app is given (`app.setValidatorCompiler`). */
export function compileValidator({ schema, httpPart }: { schema: object; httpPart?: string }) {
  const part = httpPart === 'body' ? 'body' : 'text'
  const key = `${part} ${JSON.stringify(schema)}`
  const known = validatorsByText.get(key)
  if (known) return known
  const validator = validators[part].compile(schema)
  validatorsByText.set(key, validator)
  return validator
}

const fastJsonStringify = SerializerSelector()
type SerializerCompiler = ReturnType<typeof fastJsonStringify>
type RouteDefinition = Parameters<SerializerCompiler>[0]
type Serializer = ReturnType<SerializerCompiler>

/**
 * Serializers by response schema text (route plugins build their schema objects anew for each
 * app, and the error envelopes repeat on every route), for one set of shared schemas (the app's
 * `addSchema` ones) and options.
 */
let serializers: { external: unknown[]; options: string; byText: Map<string, Serializer> } | undefined

function sameSchemas(a: unknown[], b: unknown[]) {
  return a.length === b.length && a.every((schema, index) => schema === b[index])
}

/**
 * Fastify's own serializer factory (fast-json-stringify), remembering each serializer by its
 * schema: another route or app with the same schema and shared schemas gets the same function.
 * Apps with other shared schemas or options (none today) start a new memory rather than reuse a
 * wrong one.
 */
const buildSerializer = (externalSchemas?: unknown, options?: Parameters<typeof fastJsonStringify>[1]) => {
  const compile = fastJsonStringify(externalSchemas, options)
  const external = Object.values((externalSchemas ?? {}) as Record<string, unknown>)
  const optionsKey = JSON.stringify(options ?? {})
  if (!serializers || !sameSchemas(serializers.external, external) || serializers.options !== optionsKey) {
    serializers = { external, options: optionsKey, byText: new Map() }
  }
  const { byText } = serializers
  return (route: RouteDefinition): Serializer => {
    const key = JSON.stringify(route.schema)
    if (key === undefined) return compile(route)
    const known = byText.get(key)
    if (known) return known
    const serializer = compile(route)
    byText.set(key, serializer)
    return serializer
  }
}

/** Fastify's `schemaController` option that keeps serializers across apps. */
export const schemaController: FastifyServerOptions['schemaController'] = {
  compilersFactory: { buildSerializer },
}
