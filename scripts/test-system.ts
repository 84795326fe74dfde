import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'

/**
 * `npm run test:system`: the second tier of tests, what spawns processes or needs Redis,
 * PostgreSQL, Chromium, fuzzing or the bench tooling. The tier is one list, the test files that
 * package.json's `tap.exclude` keeps out of `npm test`: a test file lands in the first tier unless
 * it is named there (docs/development.md). Extra arguments go to tap (`-- --grep=…`).
 */

const root = fileURLToPath(new URL('..', import.meta.url))

/** The second tier's test files: the entries of `tap.exclude` that name a test file. */
function systemTier(): string[] {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    tap: { exclude: string[] }
  }
  return manifest.tap.exclude.filter((entry) => entry.endsWith('.test.ts'))
}

const files = systemTier()
const missing = files.filter((file) => !existsSync(new URL(`../${file}`, import.meta.url)))
if (missing.length > 0) {
  process.stderr.write(`package.json tap.exclude names test files that do not exist: ${missing.join(', ')}\n`)
  process.exit(1)
}
// Coverage is measured and enforced on the first tier; most of this tier's code runs in child
// processes, whose coverage tap does not record. Its files run for minutes (the recipes, fuzzing).
// One file per core: these files start processes of their own and measure bounds in time, where
// the first tier's files mostly wait (package.json's `tap.jobs` runs four at a time there).
const jobs = `--jobs=${availableParallelism()}`
const { status } = spawnSync('tap', ['--disable-coverage', '--timeout=600', jobs, ...files, ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
})
process.exit(status ?? 1)
