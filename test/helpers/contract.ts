import { createHash } from 'node:crypto'
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Ajv2020Module from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { parse } from 'yaml'
import { repoRoot } from './process.js'

/**
 * Contract checks: a response of the gateway against `openapi.yaml`, the committed file (not the
 * in-memory schemas it was generated from). Ajv (JSON Schema 2020-12, the dialect of OpenAPI 3.1)
 * compiles the document's own schemas, found by method, path and status. A response the document
 * does not describe is a violation: an undeclared status, a body that does not match, a code
 * outside the status's enum, a missing required header, a header value of the wrong shape.
 *
 * Requests to paths the document does not describe must answer what its description promises
 * for them: the envelope (`ErrorEnvelope`) with `404 not_found`; `400 invalid_request` for a path
 * that is not valid percent-encoding (not a URL of any operation); `429 rate_limited` once unknown
 * routes have spent the client IP's failure budget. The explorer, the document
 * and the operators' endpoints, unless the document describes them, are only checked for
 * X-Request-Id.
 */

export interface ObservedResponse {
  readonly method: string
  /** The request path, with or without its query string. */
  readonly url: string
  readonly statusCode: number
  /** Header names in lower case, as Node and fetch give them. */
  readonly headers: Readonly<Record<string, string | string[] | number | undefined>>
  readonly body: string
}

type Json = Record<string, unknown>

const DOCUMENT_ID = 'https://studio-gateway.test/openapi.yaml'
/** Outside /v1 and needing no key: the explorer, the document, the operators' endpoints. */
const NOT_THE_API = /^\/(docs(\/|$)|openapi\.(json|yaml)$|healthz$|readyz$|metrics$)/
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace']

const pointer = (...parts: string[]) => parts.map((part) => part.replaceAll('~', '~0').replaceAll('/', '~1')).join('/')

interface Operation {
  readonly method: string
  readonly template: string
  readonly pattern: RegExp
  readonly object: Json
}

/**
 * The committed openapi.yaml, parsed. Parsing the YAML takes about a third of a second, in every
 * test process that checks an answer: the result is kept as JSON in the temporary directory, named
 * by the file's hash (a changed file is parsed again), for the next process.
 */
function committedDocument(): Json {
  const text = readFileSync(join(repoRoot, 'openapi.yaml'), 'utf8')
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 32)
  const cached = join(tmpdir(), `studio-gateway-openapi-${hash}.json`)
  try {
    return JSON.parse(readFileSync(cached, 'utf8')) as Json
  } catch {
    const document = parse(text) as Json
    // Written aside, then renamed: a process reading it at the same time sees all of it or none.
    const partial = `${cached}.${process.pid}`
    writeFileSync(partial, JSON.stringify(document))
    renameSync(partial, cached)
    return document
  }
}

export function createContract(document: Json = committedDocument()) {
  const ajv = addFormats.default(
    new Ajv2020Module.default({ strict: false, allErrors: true, validateSchema: false, validateFormats: true }),
  )
  ajv.addSchema({ ...document, $id: DOCUMENT_ID })

  const operations: Operation[] = []
  for (const [template, item] of Object.entries(document.paths as Record<string, Json>)) {
    const literal = template
      .split(/\{[^}]+\}/)
      .map((part) => part.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))
      // Fastify's router matches an empty parameter too (`/v1/studios//stream`): a studio id like any other.
      .join('[^/]*')
    for (const method of METHODS) {
      const object = item[method] as Json | undefined
      if (object) operations.push({ method, template, pattern: new RegExp(`^${literal}$`), object })
    }
  }

  /** Follows a `$ref` inside the document (`#/components/...`). */
  function deref(node: Json): { node: Json; at: string } | undefined {
    const ref = node.$ref
    if (typeof ref !== 'string') return undefined
    let target: unknown = document
    for (const part of ref.replace(/^#\//, '').split('/')) {
      target = (target as Json | undefined)?.[part.replaceAll('~1', '/').replaceAll('~0', '~')]
    }
    return target ? { node: target as Json, at: ref.slice(1) } : undefined
  }

  function validator(at: string) {
    const validate = ajv.getSchema(`${DOCUMENT_ID}#${at}`)
    if (!validate) throw new Error(`openapi.yaml has no schema at ${at}`)
    return validate
  }

  function describeErrors(errors: typeof ajv.errors): string {
    return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`.trim()).join('; ')
  }

  function headerValue(response: ObservedResponse, name: string): string | undefined {
    const value = response.headers[name.toLowerCase()]
    return value === undefined ? undefined : Array.isArray(value) ? value.join(', ') : String(value)
  }

  function checkHeaders(response: ObservedResponse, headers: Json | undefined, at: string, violations: string[]) {
    for (const [name, declared] of Object.entries(headers ?? {})) {
      const resolved = deref(declared as Json) ?? { node: declared as Json, at: `${at}/${pointer(name)}` }
      const value = headerValue(response, name)
      if (value === undefined) {
        if (resolved.node.required === true) violations.push(`missing the required header ${name}`)
        continue
      }
      const validate = validator(`${resolved.at}/schema`)
      // Header values are text: an integer-typed header must be an integer written in digits.
      const ok = validate(value) || (/^-?\d+$/.test(value) && validate(Number(value)))
      if (!ok) violations.push(`header ${name}: ${JSON.stringify(value)} does not match its schema`)
    }
  }

  function checkBody(response: ObservedResponse, at: string, violations: string[]) {
    const contentType = headerValue(response, 'content-type') ?? ''
    if (!contentType.startsWith('application/json')) {
      violations.push(`content-type ${JSON.stringify(contentType)}, expected application/json`)
      return
    }
    let body: unknown
    try {
      body = JSON.parse(response.body)
    } catch {
      violations.push('the body is not JSON')
      return
    }
    const validate = validator(at)
    if (!validate(body)) violations.push(`body does not match the schema: ${describeErrors(validate.errors)}`)
  }

  /** Every way the response departs from the document; empty when it conforms. */
  function check(response: ObservedResponse): string[] {
    const violations: string[] = []
    const path = response.url.split('?', 1)[0] ?? ''
    if (headerValue(response, 'x-request-id') === undefined) violations.push('no X-Request-Id header')

    // HEAD answers as GET does, without a body.
    const method = response.method.toLowerCase() === 'head' ? 'get' : response.method.toLowerCase()
    const withBody = response.method.toLowerCase() !== 'head'
    // A path that is not valid percent-encoding is not a URL of any operation.
    const operation = isDecodable(path)
      ? operations.find((o) => o.method === method && o.pattern.test(path))
      : undefined
    if (!operation && NOT_THE_API.test(path)) return violations
    if (!operation) {
      const where = `${response.method} ${path} (not described)`
      const expected = { 404: 'not_found', 400: 'invalid_request', 429: 'rate_limited' }[response.statusCode]
      if (!expected) violations.push('only 404 not_found (400 invalid_request, 429 rate_limited) may answer it')
      else if (withBody) {
        checkBody(response, '/components/schemas/ErrorEnvelope', violations)
        const code = (JSON.parse(response.body || 'null') as { error?: { code?: string } } | null)?.error?.code
        if (violations.length === 0 && code !== expected) violations.push(`code ${code}, expected ${expected}`)
      }
      return violations.map((violation) => `${where} → ${response.statusCode}: ${violation}`)
    }

    const status = String(response.statusCode)
    const responses = operation.object.responses as Json
    const declared = (responses[status] ?? responses.default) as Json | undefined
    const where = `${operation.method.toUpperCase()} ${operation.template}`
    if (!declared) return [...violations, `${where} does not declare status ${status}`]
    const at = `/paths/${pointer(operation.template, operation.method, 'responses', status)}`
    const resolved = deref(declared) ?? { node: declared, at }

    checkHeaders(response, resolved.node.headers as Json | undefined, `${resolved.at}/headers`, violations)
    const content = resolved.node.content as Json | undefined
    if (content && withBody)
      checkBody(response, `${resolved.at}/content/${pointer('application/json')}/schema`, violations)
    if (!content && withBody && response.body !== '') violations.push(`${where} ${status} declares no body`)
    return violations.map((violation) => `${where} → ${status}: ${violation}`)
  }

  return { check, operations }
}

function isDecodable(path: string): boolean {
  try {
    decodeURIComponent(path)
    return true
  } catch {
    return false
  }
}

export type Contract = ReturnType<typeof createContract>

let shared: Contract | undefined

/** The contract of the committed openapi.yaml, compiled once per test process. */
export function contract(): Contract {
  shared ??= createContract()
  return shared
}

/** How a fetch `Response` (of a listening gateway) departs from openapi.yaml; its body stays unread. */
export async function fetchViolations(method: string, url: string, response: Response): Promise<string[]> {
  return contract().check({
    method,
    url: new URL(url).pathname,
    statusCode: response.status,
    headers: Object.fromEntries(response.headers),
    body: await response.clone().text(),
  })
}
