import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { generate, staleFiles } from '../scripts/openapi.js'
import { startGateway } from './helpers/gateway.js'
import { repoRoot } from './helpers/process.js'

type Json = Record<string, unknown>

const committed = () => readFile(join(repoRoot, 'openapi.yaml'), 'utf8')

t.test('openapi.yaml is OpenAPI 3.1 with named components and complete operations', async (t) => {
  const document = parse(await committed()) as Json
  t.equal(document.openapi, '3.1.0')
  const components = document.components as Record<string, Json>
  for (const name of [
    'Studio',
    'Stream',
    'Session',
    'StudioList',
    'SessionList',
    'ApiKey',
    'ApiKeyDetails',
    'NewApiKey',
    'ApiKeyList',
    'ErrorEnvelope',
    'Scope',
  ]) {
    t.ok(components.schemas?.[name], `component ${name}`)
  }
  t.notMatch(Object.keys(components.schemas ?? {}).join(' '), /def-\d/, 'no anonymous def-N components')
  t.match(components.securitySchemes, {
    bearerAuth: { type: 'http', scheme: 'bearer' },
    apiKeyHeader: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
  })
  const stream = components.schemas?.Stream as { properties: Json }
  const title = stream.properties.title
  t.same((title as Json).anyOf, [{ type: 'string' }, { type: 'null' }], 'a nullable field is a union with null')

  const operations = Object.entries(document.paths as Record<string, Record<string, Json>>).flatMap(([path, item]) =>
    Object.entries(item).map(([method, operation]) => ({ path, method, operation })),
  )
  t.same(operations.map((o) => o.operation.operationId).sort(), [
    'createKey',
    'getKey',
    'getKeyById',
    'getStream',
    'getStudio',
    'goLive',
    'goOffline',
    'listKeys',
    'listSessions',
    'listStudios',
    'revokeKey',
    'rollKey',
  ])
  for (const { path, method, operation } of operations) {
    const label = `${method.toUpperCase()} ${path}`
    t.type(operation.summary, 'string', `${label}: summary`)
    t.ok((operation.tags as string[]).length > 0, `${label}: tags`)
    t.ok('x-required-scope' in operation, `${label}: x-required-scope`)
    const scope = operation['x-required-scope']
    t.same(
      operation.security,
      [{ bearerAuth: scope === null ? [] : [scope] }, { apiKeyHeader: scope === null ? [] : [scope] }],
      `${label}: either scheme, naming the scope`,
    )
    const responses = operation.responses as Record<string, Json>
    for (const status of ['400', '401', '429', '500', '503']) t.ok(responses[status], `${label}: declares ${status}`)
    const unauthorized = responses['401'] as { headers: Json; content: Record<string, { examples: Json }> }
    t.ok(unauthorized.headers['WWW-Authenticate'], `${label}: 401 documents WWW-Authenticate`)
    t.ok(unauthorized.content['application/json']?.examples.invalid_key, `${label}: 401 has an example envelope`)
    const tooMany = responses['429'] as { headers: Json }
    t.ok(tooMany.headers['Retry-After'], `${label}: 429 documents Retry-After`)
    t.ok((responses['503'] as { headers: Json }).headers['Retry-After'], `${label}: 503 documents Retry-After`)
    for (const [status, response] of Object.entries(responses)) {
      const headers = response.headers as Json
      t.ok(headers['X-Request-Id'], `${label} ${status}: X-Request-Id`)
      t.ok(
        headers['RateLimit-Limit'] && headers['RateLimit-Remaining'] && headers['RateLimit-Reset'],
        `${label} ${status}: RateLimit-*`,
      )
      if (!status.startsWith('2') && scope !== null)
        t.ok(headers['X-Accepted-Scopes'], `${label} ${status}: X-Accepted-Scopes`)
    }
  }
})

t.test('the document and the explorer are served without a key', async (t) => {
  const gw = await startGateway(t)
  const yaml = await gw.app.inject({ url: '/openapi.yaml' })
  t.equal(yaml.statusCode, 200)
  t.match(yaml.headers['content-type'], /^application\/yaml/)
  t.equal(yaml.body, await committed(), 'the served document is the committed file')
  const json = await gw.app.inject({ url: '/openapi.json' })
  t.equal(json.statusCode, 200)
  t.same(json.json(), parse(await committed()))
  const docs = await gw.app.inject({ url: '/docs' })
  t.equal(docs.statusCode, 200)
  t.match(docs.headers['content-type'], /^text\/html/)
  t.match(docs.body, /swagger-ui/i)
  t.match(docs.headers['x-request-id'], /^req_[0-9a-f]{16}$/, 'the explorer’s answers carry X-Request-Id too')
  const initializer = await gw.app.inject({ url: '/docs/static/swagger-initializer.js' })
  t.match(initializer.body, /"persistAuthorization":\s*true/)
  t.match(initializer.body, /"tryItOutEnabled":\s*true/)
})

t.test('the committed openapi.yaml and its types are what the code generates', async (t) => {
  t.same(
    await staleFiles(repoRoot, await generate()),
    [],
    'openapi.yaml and the client types match the route schemas (`npm run openapi` regenerates them)',
  )
})
