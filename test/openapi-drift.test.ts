import { spawnSync } from 'node:child_process'
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { GENERATED_FILES } from '../scripts/openapi.js'
import { repoRoot } from './helpers/process.js'

// Tier 2 (it spawns the drift check twice on a copy of the repository): `npm run test:system`.

/** Runs the drift check in `dir` (a copy of the repository): its exit code and output. */
function runCheck(dir: string) {
  const result = spawnSync(
    process.execPath,
    ['--enable-source-maps', '--import', 'tsx', 'scripts/openapi.ts', '--check'],
    {
      cwd: dir,
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
    },
  )
  return { code: result.status, output: `${result.stdout}${result.stderr}` }
}

t.test('openapi:check fails after a route schema change that was not regenerated', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'studio-gateway-drift-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const skip = new Set(['node_modules', '.git', 'dist', 'data', '.tap', 'coverage'])
  await cp(repoRoot, dir, {
    recursive: true,
    filter: (source) => !skip.has(source.slice(repoRoot.length).split('/')[0] ?? ''),
  })
  await symlink(join(repoRoot, 'node_modules'), join(dir, 'node_modules'))

  const before = runCheck(dir)
  t.equal(before.code, 0, `the committed files match the code: ${before.output}`)

  // A field added to a response schema, without `npm run openapi`.
  const resources = join(dir, 'schemas/resources.ts')
  const source = await readFile(resources, 'utf8')
  const changed = source.replace("name: Type.String({ examples: ['Main Stage'] }),", '$&\n    slug: Type.String(),')
  t.not(changed, source, 'the schema was changed')
  await writeFile(resources, changed)
  const after = runCheck(dir)
  t.equal(after.code, 1, 'the check fails')
  t.match(after.output, `${GENERATED_FILES.document} and ${GENERATED_FILES.types} differ`)
  t.match(after.output, /npm run openapi/, 'and says how to fix it')
})
