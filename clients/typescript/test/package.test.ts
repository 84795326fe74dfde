import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { StudioGatewayClient, StudioGatewayError } from '@studio-gateway/client'
import t from 'tap'
import { GENERATED_FILES, generate, staleFiles } from '../../../scripts/openapi.js'
import { deadPort } from './helpers/scripted-server.js'

/**
 * The package as a consumer gets it: imported by its name (the workspace link to its `dist/`,
 * which `npm ci` and `npm test` build), with its types, and nothing else at run time.
 */

const packageDir = fileURLToPath(new URL('..', import.meta.url))

t.test('the package resolves by name to its built dist, types included', async (t) => {
  const resolved = createRequire(import.meta.url).resolve('@studio-gateway/client')
  t.equal(resolved, join(packageDir, 'dist/index.js'))
  const manifest = JSON.parse(await readFile(join(packageDir, 'package.json'), 'utf8'))
  t.match(manifest, {
    name: '@studio-gateway/client',
    type: 'module',
    exports: { '.': { types: './dist/index.d.ts' } },
  })
  t.same(
    Object.keys(manifest.dependencies ?? {}),
    ['structured-headers'],
    'one runtime dependency, the RFC 9651 parser of the RateLimit fields: it runs on the platform’s fetch',
  )
  const declarations = await readFile(join(packageDir, 'dist/index.d.ts'), 'utf8')
  t.match(declarations, /StudioGatewayClient/)
})

t.test('the built code imports nothing but its own modules and its one dependency', async (t) => {
  const dist = join(packageDir, 'dist')
  const files = (await readdir(dist)).filter((file) => file.endsWith('.js'))
  t.ok(files.length >= 4)
  for (const file of files) {
    const source = await readFile(join(dist, file), 'utf8')
    const specifiers = [...source.matchAll(/\bfrom\s+'([^']+)'|\bimport\(\s*'([^']+)'/g)].map((m) => m[1] ?? m[2])
    t.ok(
      specifiers.every((specifier) => specifier?.startsWith('./') || specifier === 'structured-headers'),
      `${file}: ${specifiers.join(', ') || 'no imports'}`,
    )
  }
})

t.test('the built client fails with its own error class', async (t) => {
  const client = new StudioGatewayClient({
    baseUrl: `http://127.0.0.1:${await deadPort()}`,
    apiKey: 'sk_live_x',
    retry: { maxAttempts: 1 },
  })
  const error = await client.getKey().catch((caught: unknown) => caught)
  t.ok(error instanceof StudioGatewayError)
  t.match(error, { code: 'network_error', attempts: 1, operation: 'getKey' })
})

t.test('openapi:check catches client types that drift from openapi.yaml', async (t) => {
  const generated = await generate()
  const root = await mkdtemp(join(tmpdir(), 'studio-gateway-client-drift-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const types = join(root, GENERATED_FILES.types)
  await mkdir(dirname(types), { recursive: true })
  await writeFile(join(root, GENERATED_FILES.document), generated.document)
  await writeFile(types, generated.types)
  t.same(await staleFiles(root, generated), [], 'generated as the check expects')
  await writeFile(types, generated.types.replace('"studio:read" | ', ''))
  t.same(await staleFiles(root, generated), [GENERATED_FILES.types], 'a hand-edited client type is caught')
})
