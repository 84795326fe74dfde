import { redactKeys } from './api-keys.js'

/** What this module reads of one of Ajv's errors, as Fastify hands them over. */
export interface ValidationIssue {
  readonly keyword: string
  readonly instancePath: string
  readonly params: Record<string, unknown>
  readonly message?: string
}

const parts: Record<string, string> = {
  body: 'body',
  querystring: 'querystring parameter',
  params: 'path parameter',
  headers: 'header',
}

/**
 * The message of a `400 invalid_request` for input that failed its schema: it names the offending
 * field (escaped, bounded, key-scrubbed), never the value sent.
 */
export function describeValidation(issues: readonly ValidationIssue[], context: string | undefined): string {
  const first = issues[0]
  const part = context ?? 'request'
  if (!first) return `${part} is invalid`
  const params = first.params ?? {}
  const path = first.instancePath
    .split('/')
    .slice(1)
    .map((segment) => segment.replaceAll('~1', '/').replaceAll('~0', '~'))
    .join('.')
  const field = (name: string) => quoteField(path === '' ? name : `${path}.${name}`)
  switch (first.keyword) {
    case 'additionalProperties': {
      const name = String(params.additionalProperty)
      return part === 'body'
        ? `body has an unknown field ${field(name)}`
        : `unknown ${parts[part] ?? part} ${field(name)}`
    }
    case 'required':
      return `${part} is missing the required field ${field(String(params.missingProperty))}`
  }
  if (path === '') {
    return part === 'body' ? 'body must be a JSON object, or empty' : `${part} ${first.message ?? 'is invalid'}`
  }
  return `${parts[part] ?? part} ${quoteField(path)} ${first.message ?? 'is invalid'}`
}

/** Text from the client, for a message: JSON-quoted (so control characters are escaped), bounded, key-scrubbed. */
function quoteField(name: string, max = 64): string {
  const bounded = name.length > max ? `${name.slice(0, max)}…` : name
  return JSON.stringify(redactKeys(bounded))
}
