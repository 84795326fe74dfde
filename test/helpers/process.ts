import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
const cliEntry = fileURLToPath(new URL('./cli-entry.ts', import.meta.url))

export interface RunningCli {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  /** Resolves with the first match of `pattern` in stdout, or rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Spawns the command line (from source, through tsx) as a real child process. */
export function spawnCli(args: string[], env: Record<string, string>): RunningCli {
  return spawnEntry(cliEntry, args, env)
}

/**
 * Spawns a TypeScript entry file (through tsx) as a real child process; with `descriptorLimit`,
 * under that limit of open files (`ulimit -n`, set by a shell that then becomes the process: soft
 * and hard, since Node raises its soft limit to the hard one at start).
 */
export function spawnEntry(
  entry: string,
  args: string[],
  env: Record<string, string>,
  { descriptorLimit }: { descriptorLimit?: number } = {},
): RunningCli {
  const node = [process.execPath, '--enable-source-maps', '--import', 'tsx', entry, ...args]
  const [command, ...commandArgs] =
    descriptorLimit === undefined ? node : ['bash', '-c', `ulimit -n ${descriptorLimit} && exec "$@"`, 'bash', ...node]
  const child = spawn(command as string, commandArgs, {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      // tap would record this child's coverage too, but tsx emits whitespace-minified code (a file
      // in a handful of lines) that the source map cannot spread back over the TypeScript lines:
      // merged with the in-process coverage, it corrupts the report (a file's lines collapse into
      // one, executed lines read as uncovered). The code a child runs is run in process too.
      _TAPJS_PROCESSINFO_COVERAGE_: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout?.on('data', (chunk) => {
    out += chunk
  })
  child.stderr?.on('data', (chunk) => {
    err += chunk
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  )
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(pattern, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const started = Date.now()
        const poll = () => {
          const match = pattern.exec(out)
          if (match) return resolve(match)
          if (child.exitCode !== null) return reject(new Error(`exited (${child.exitCode}) before ${pattern}: ${err}`))
          if (Date.now() - started > timeoutMs)
            return reject(new Error(`timed out waiting for ${pattern}: ${out}${err}`))
          setTimeout(poll, 25)
        }
        poll()
      })
    },
  }
}
