// Keeps dist/ as new as the TypeScript it is compiled from, so that a start or a command with nothing
// changed runs the compiled code at once, and one after an edit (or a `git pull`) compiles first.
// `npm ci` compiles through the `prepare` script; tsc writes dist/.tsbuildinfo on every build
// (tsconfig.build.json), whose age is the age of the build. Looking costs a few milliseconds.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync, unlinkSync, utimesSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const buildInfo = join(root, 'dist', '.tsbuildinfo')
/** What tsconfig.build.json compiles: the root's .ts files and these folders, and the two configurations. */
const SOURCE_DIRS = ['cli', 'lib', 'pipeline', 'plugins', 'routes', 'schemas', 'stores']
const CONFIG_FILES = ['tsconfig.json', 'tsconfig.build.json']

/** The newest modification time (ms) of the .ts files under `dir` (`deep`: in its subfolders too). */
function newestSource(dir, deep) {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory() && deep) newest = Math.max(newest, newestSource(path, true))
    else if (entry.isFile() && entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs)
  }
  return newest
}

function sourcesAge() {
  const folders = SOURCE_DIRS.map((dir) => newestSource(join(root, dir), true))
  const configs = CONFIG_FILES.map((file) => statSync(join(root, file)).mtimeMs)
  return Math.max(newestSource(root, false), ...folders, ...configs)
}

/** tsc's entry, or undefined where the devDependencies are not installed (`npm ci --omit=dev`). */
function compiler() {
  try {
    const manifest = createRequire(import.meta.url).resolve('typescript/package.json')
    return join(dirname(manifest), 'bin', 'tsc')
  } catch {
    return undefined
  }
}

/** Compiles dist/ when a source is newer than the last build; exits the process when that fails. */
export function ensureFreshDist() {
  const builtAt = existsSync(buildInfo) ? statSync(buildInfo).mtimeMs : 0
  if (builtAt >= sourcesAge()) return
  const tsc = compiler()
  if (tsc === undefined) {
    if (builtAt > 0) return
    process.stderr.write('dist/ is missing and TypeScript is not installed: run `npm ci` first\n')
    process.exit(1)
  }
  process.stderr.write('sources changed since the last build: compiling to dist/ (npm run build:server)\n')
  const { status } = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' })
  if (status === 0) {
    // tsc leaves its record alone when only a file's time changed: mark the build as this one.
    if (existsSync(buildInfo)) utimesSync(buildInfo, new Date(), new Date())
    return
  }
  // Without a build record, the next start compiles again instead of running what failed to build.
  if (existsSync(buildInfo)) unlinkSync(buildInfo)
  process.stderr.write('the build failed: fix the errors above, then start again\n')
  process.exit(1)
}
