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
/** A validator as Fastify calls it: the route schemas are synchronous (none is `$async`). */
type ValidatorLike = ((data: unknown) => boolean) & { errors?: Validator['errors'] }
/** Validators by HTTP part and schema text: route plugins build their schema objects anew for each app. */
const validatorsByText = new Map<string, ValidatorLike>()

/** The validator compiler every app is given (`app.setValidatorCompiler`). */
export function compileValidator({ schema, httpPart }: { schema: object; httpPart?: string }) {
  const part = httpPart === 'body' ? 'body' : 'text'
  const key = `${part} ${JSON.stringify(schema)}`
  const known = validatorsByText.get(key)
  if (known) return known
  const compiled = validators[part].compile(schema) as Validator & ValidatorLike
  const validator = part === 'text' ? withDecimalIntegers(compiled, schema) : compiled
  validatorsByText.set(key, validator)
  return validator
}

/** An integer as a query string or a path may write it: decimal digits, an optional minus sign. */
const DECIMAL_INTEGER = /^-?[0-9]+$/

/**
 * Ajv coerces text to a number the way `Number()` does, so `limit=0x10`, `1e1`, `+5`, `10.0` or
 * `5 ` would pass as integers, and a blank one as 0 (refused as "must be >= 1"). The text of an
 * integer parameter must be decimal digits: anything else is refused as not an integer, before Ajv
 * coerces it. (Repeated parameters arrive as an array, which Ajv refuses as such.)
 */
function withDecimalIntegers(validator: ValidatorLike, schema: object): ValidatorLike {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> }).properties ?? {}
  const integers = Object.keys(properties).filter((name) => properties[name]?.type === 'integer')
  if (integers.length === 0) return validator
  const strict: ValidatorLike = (data) => {
    if (data !== null && typeof data === 'object') {
      for (const name of integers) {
        const value = (data as Record<string, unknown>)[name]
        if (typeof value === 'string' && !DECIMAL_INTEGER.test(value)) {
          strict.errors = [
            {
              instancePath: `/${name}`,
              schemaPath: `#/properties/${name}/type`,
              keyword: 'type',
              params: { type: 'integer' },
              message: 'must be integer',
            },
          ]
          return false
        }
      }
    }
    const valid = validator(data)
    strict.errors = validator.errors
    return valid
  }
  return strict
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
