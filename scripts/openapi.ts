import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript'
import { buildApp } from '../app.js'
import { loadConfig } from '../config.js'

/**
 * `npm run openapi` writes `openapi.yaml` and the TypeScript types of it from the route schemas,
 * building the same app as the server (without listening). `npm run openapi:check` writes
 * nothing and fails when a committed file differs from what the code generates.
 */

/**
 * The generated files, relative to the repository root. The types live in the client package
 * (`clients/typescript`), which is built from them; the server's own tests import them from there.
 */
export const GENERATED_FILES = {
  document: 'openapi.yaml',
  types: 'clients/typescript/src/openapi.generated.ts',
} as const

type Generated = Record<keyof typeof GENERATED_FILES, string>

export async function generate(): Promise<Generated> {
  const dataDir = await mkdtemp(join(tmpdir(), 'studio-gateway-openapi-'))
  try {
    // A fixed configuration: the document must not depend on the environment of whoever runs this.
    const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent', DATA_DIR: dataDir }))
    await app.ready()
    const document = app.swagger({ yaml: true })
    await app.close()
    // The types come from the YAML text itself, as a client generating them from the file would.
    const types = COMMENT_HEADER + astToString(await openapiTS(document))
    return { document, types }
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
}

/** The generated files whose committed content differs from what the code generates now. */
export async function staleFiles(root: string, generated: Generated): Promise<string[]> {
  const stale: string[] = []
  for (const [name, path] of Object.entries(GENERATED_FILES)) {
    const committed = await readFile(join(root, path), 'utf8').catch(() => undefined)
    if (committed !== generated[name as keyof Generated]) stale.push(path)
  }
  return stale
}

async function main(args: string[]): Promise<number> {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const generated = await generate()
  if (args.includes('--check')) {
    const stale = await staleFiles(root, generated)
    if (stale.length === 0) {
      console.log(`openapi: ${Object.values(GENERATED_FILES).join(' and ')} match the route schemas`)
      return 0
    }
    console.error(
      `openapi: ${stale.join(' and ')} differ${stale.length === 1 ? 's' : ''} from what the route schemas generate.\n` +
        'Run `npm run openapi` and commit the result.',
    )
    return 1
  }
  for (const [name, path] of Object.entries(GENERATED_FILES)) {
    await writeFile(join(root, path), generated[name as keyof Generated])
    console.log(`openapi: wrote ${path}`)
  }
  return 0
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main(process.argv.slice(2))
}
