import { spawnSync } from 'node:child_process'
import { cp, readdir, stat, symlink, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { repoRoot } from './helpers/process.js'

/**
 * The command line runs dist/ as it is while no source is newer than the last build, and compiles
 * first when one is (bin/fresh-dist.js): on a copy of the repository's sources and dist/ (times
 * kept), with the real node_modules linked in, so the checkout itself is never rebuilt.
 */

const COPIED = ['bin', 'dist', 'cli', 'lib', 'pipeline', 'plugins', 'routes', 'schemas', 'stores']

async function copyOfRepository(dir: string) {
  const rootFiles = (await readdir(repoRoot)).filter(
    (name) => name.endsWith('.ts') || /^(tsconfig.*|package)\.json$/.test(name),
  )
  for (const name of [...COPIED, ...rootFiles]) {
    await cp(join(repoRoot, name), join(dir, name), { recursive: true, preserveTimestamps: true })
  }
  await symlink(join(repoRoot, 'node_modules'), join(dir, 'node_modules'))
}

function help(dir: string) {
  const run = spawnSync(process.execPath, ['bin/studio-gateway.js', 'help'], { cwd: dir, encoding: 'utf8' })
  return { code: run.status, stdout: run.stdout, stderr: run.stderr }
}

t.test('the bin compiles only when a source is newer than the last build', async (t) => {
  const dir = t.testdir()
  await copyOfRepository(dir)
  // The checkout's dist/ may be behind its sources: the first call brings the copy's up to date.
  t.equal(help(dir).code, 0, 'the copy builds if it must')

  const unchanged = help(dir)
  t.equal(unchanged.code, 0)
  t.match(unchanged.stdout, /Usage|usage/, 'the command answers')
  t.notMatch(unchanged.stderr, /compiling/, 'nothing changed: no compilation')

  // Just newer than the copied build (still in the past, so the rebuild's record is newer again).
  const built = (await stat(join(dir, 'dist', '.tsbuildinfo'))).mtimeMs
  const edit = new Date(built + 10)
  await utimes(join(dir, 'pipeline', 'index.ts'), edit, edit)
  const edited = help(dir)
  t.equal(edited.code, 0, 'the edited copy still answers', { stderr: edited.stderr })
  t.match(edited.stderr, /sources changed since the last build: compiling/, 'a newer source compiles first')

  const again = help(dir)
  t.notMatch(again.stderr, /compiling/, 'once built, the next call runs at once')
})
