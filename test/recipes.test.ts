import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { POSTGRES_SKIP_REASON, testDatabaseUrl } from './helpers/database.js'
import { repoRoot, spawnEntry } from './helpers/process.js'
import { freePort, sharedRedisUrl } from './helpers/redis.js'

/**
 * Every shell block (```sh, ```bash, ```shell) of README.md and docs/*.md runs here as written,
 * in bash with `-e -o pipefail`, from the repository root, against real processes. Ports and names
 * aside: the ports 3000, 3001 and 4000 (of a `127.0.0.1:` address or a `PORT=`) become free ones,
 * and a database named `studio_gateway` one of the test's own. The line before a block may say what it needs (docs/development.md, "Recipes"):
 *
 *   <!-- not a recipe: why -->                    the block is not run (a synopsis, the benchmark…)
 *   <!-- recipe: WRITES_ENABLED=true -->          the gateway the test starts runs with these variables
 *   <!-- recipe: own processes; needs PostgreSQL and Redis -->
 *                                                 the block starts what it calls; it runs only where
 *                                                 DATABASE_URL / REDIS_URL say those services are
 *
 * Unless it starts its own processes, a block runs against a gateway listening on its port 3000.
 * Every block gets the seeded demo data directory (DATA_DIR) and its keys (STUDIO_KEY, and
 * STUDIO_TEST_KEY for the sandbox), as a reader who followed the README has them. A block passes when bash exits 0 and every error code in what
 * it printed is one its text names (a recipe that shows an error says so).
 */

const DOCUMENTS = ['README.md', ...readdirSync(join(repoRoot, 'docs')).map((name) => `docs/${name}`)].filter((file) =>
  file.endsWith('.md'),
)
const SHELL_FENCE = /^```(?:sh|bash|shell)\s*$/
const NOTE = /^<!--\s*(recipe|not a recipe):\s*(.*?)\s*-->$/
/** A documented port: in an address on the loopback, or given as PORT. */
const PORTS = /(?<=(?:127\.0\.0\.1|localhost):|PORT=)(3000|3001|4000)\b/g
const DATABASE_NAME = /\bstudio_gateway\b/

interface Recipe {
  readonly where: string
  readonly script: string
  /** `not a recipe` with its reason, or the recipe's own line (variables, needs), or undefined. */
  readonly note?: { readonly kind: 'recipe' | 'not a recipe'; readonly text: string }
}

/** The shell blocks of `file`, each with the note on the line before it (blank lines between allowed). */
function recipesOf(file: string): Recipe[] {
  const lines = readFileSync(join(repoRoot, file), 'utf8').split('\n')
  const recipes: Recipe[] = []
  for (let i = 0; i < lines.length; i++) {
    if (!SHELL_FENCE.test(lines[i] ?? '')) continue
    const end = lines.findIndex((line, j) => j > i && line.startsWith('```'))
    let before = i - 1
    while (before >= 0 && lines[before]?.trim() === '') before--
    const note = NOTE.exec(lines[before]?.trim() ?? '')
    recipes.push({
      where: `${file}:${i + 1}`,
      script: lines.slice(i + 1, end).join('\n'),
      ...(note ? { note: { kind: note[1] as 'recipe' | 'not a recipe', text: note[2] ?? '' } } : {}),
    })
    i = end
  }
  return recipes
}

/** The variables a `recipe:` note sets for the gateway (`WRITES_ENABLED=true …`). */
function noteVariables(text: string): Record<string, string> {
  return Object.fromEntries([...text.matchAll(/\b([A-Z][A-Z0-9_]*)=(\S+)/g)].map((m) => [m[1], m[2]]))
}

/** Why the recipe cannot run here, or false. */
function skipReason(recipe: Recipe): string | false {
  if (recipe.note?.kind === 'not a recipe') return `not a recipe: ${recipe.note.text}`
  const needs = recipe.note?.text ?? ''
  if (/needs[^;]*PostgreSQL/.test(needs) && testDatabaseUrl === undefined) return POSTGRES_SKIP_REASON
  if (/needs[^;]*Redis/.test(needs) && sharedRedisUrl === undefined) return 'needs Redis: REDIS_URL is not set'
  return false
}

/** The script with each documented port replaced by a free one, the same one for each mention. */
async function withFreePorts(script: string): Promise<{ script: string; ports: Map<string, string> }> {
  const ports = new Map<string, string>()
  for (const [port] of script.matchAll(PORTS)) {
    if (!ports.has(port)) ports.set(port, String(await freePort()))
  }
  return { script: script.replace(PORTS, (port) => ports.get(port) ?? port), ports }
}

/**
 * The demo data a README reader has: a gateway started on an empty DATA_DIR seeds it and prints the
 * key. With `port`, that gateway keeps serving there (with `env`); without, it stops once seeded.
 */
async function seededGateway(t: Test, env: Record<string, string>, port?: string) {
  const dataDir = t.testdir()
  const gateway = spawnEntry(join(repoRoot, 'bin/studio-gateway.js'), ['serve'], {
    DATA_DIR: dataDir,
    PORT: port ?? '0',
    LOG_LEVEL: 'warn',
    ...env,
  })
  t.teardown(() => stop(gateway.child))
  const [, key = ''] = await gateway.waitFor(/export STUDIO_KEY=(sk_live_\w+)/, 60_000)
  const [, testKey = ''] = await gateway.waitFor(/export STUDIO_TEST_KEY=(sk_test_\w+)/)
  if (port === undefined) await stop(gateway.child)
  else await ready(port)
  return { DATA_DIR: dataDir, STUDIO_KEY: key, STUDIO_TEST_KEY: testKey }
}

async function stop(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

async function ready(port: string) {
  for (let attempt = 0; attempt < 300; attempt++) {
    const answer = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined)
    if (answer?.ok) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`no gateway became ready on port ${port}`)
}

/** Runs `script` in bash (its own process group, killed at the end with whatever it left running). */
async function runScript(t: Test, script: string, env: Record<string, string>) {
  const bash = spawn('bash', ['-e', '-o', 'pipefail', '-c', script], {
    cwd: repoRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', _TAPJS_PROCESSINFO_COVERAGE_: '0', ...env },
  })
  let output = ''
  bash.stdout.on('data', (chunk) => {
    output += chunk
  })
  bash.stderr.on('data', (chunk) => {
    output += chunk
  })
  const killGroup = () => {
    try {
      if (bash.pid !== undefined) process.kill(-bash.pid, 'SIGTERM')
    } catch {
      // the group is gone already
    }
  }
  t.teardown(killGroup)
  const code = await new Promise<number | null>((resolve) => bash.once('exit', resolve))
  killGroup()
  return { code, output }
}

/** A database of the test's own for a recipe that creates `studio_gateway`, dropped at the end. */
function ownDatabase(t: Test): string {
  const name = `sg_recipe_${process.pid}_${randomBytes(4).toString('hex')}`
  t.teardown(() => {
    spawnSync('dropdb', ['-h', '127.0.0.1', '-U', 'postgres', '--if-exists', '--force', name])
  })
  return name
}

t.before(() => {
  // The bin compiles dist/ when a source is newer than the last build: do it once, before any
  // recipe starts gateways side by side.
  const built = spawnSync(process.execPath, ['bin/studio-gateway.js', 'help'], { cwd: repoRoot, encoding: 'utf8' })
  if (built.status !== 0) throw new Error(`bin/studio-gateway.js help failed: ${built.stderr}`)
})

for (const file of DOCUMENTS) {
  t.test(file, async (t) => {
    const recipes = recipesOf(file)
    if (recipes.length === 0) t.pass('no shell block')
    for (const recipe of recipes) {
      t.test(recipe.where, { skip: skipReason(recipe) }, async (t) => {
        const ownProcesses = /own processes/.test(recipe.note?.text ?? '')
        let { script, ports } = await withFreePorts(recipe.script)
        if (DATABASE_NAME.test(script)) script = script.replaceAll(new RegExp(DATABASE_NAME, 'g'), ownDatabase(t))
        const env = ownProcesses
          ? await seededGateway(t, {})
          : await seededGateway(t, noteVariables(recipe.note?.text ?? ''), ports.get('3000'))
        const { code, output } = await runScript(t, script, env)
        // What ran and what it printed show with a failure (tap prints the extra fields then).
        t.equal(code, 0, 'the recipe exits 0', { script, output })
        t.not(output.trim(), '', 'it prints what it shows')
        const codes = [...output.matchAll(/"error":\{"code":"([a-z_]+)"/g)].map((m) => m[1])
        for (const code of new Set(codes)) {
          t.ok(recipe.script.includes(code ?? ''), `the recipe says it shows ${code}`, { output })
        }
      })
    }
  })
}
