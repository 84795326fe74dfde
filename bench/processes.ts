import { type ChildProcess, fork, spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import type { LoadJob, LoadReply, LoadResult } from './load-worker.js'

/**
 * The child processes of a benchmark run: servers and the load generator. Every child is tracked
 * and killed when the harness ends, whether it finishes, fails or is interrupted.
 */

export const repoRoot = fileURLToPath(new URL('..', import.meta.url))

const children = new Set<ChildProcess>()

/** Kills `child` with the others when the harness ends. */
export function track(child: ChildProcess): ChildProcess {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

/** Kills whatever is still running; synchronous, so it also works from an 'exit' handler. */
export function killAll(): void {
  for (const child of children) child.kill('SIGKILL')
  children.clear()
}

let cleanupInstalled = false

/** On Ctrl-C, SIGTERM, an uncaught error or a normal exit, no child outlives the harness. */
export function installCleanup(): void {
  if (cleanupInstalled) return
  cleanupInstalled = true
  process.on('exit', killAll)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping the servers\n`)
      killAll()
      process.exit(130)
    })
  }
  process.on('uncaughtException', (error) => {
    process.stderr.write(`bench: ${error.stack ?? error}\n`)
    killAll()
    process.exit(1)
  })
}

/** A port nobody listens on right now (the kernel picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

export interface Server {
  readonly name: string
  readonly child: ChildProcess
  readonly pid: number
  readonly url: string
  /** Bytes and lines the server wrote to stdout (its log), drained through a pipe. */
  readonly output: { bytes: number; lines: number }
  /** The last few KB of stderr, to explain a failure. */
  stderrTail(): string
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>
}

export interface ServerSpec {
  readonly name: string
  readonly args: readonly string[]
  readonly env: Record<string, string>
  readonly port: number
  /** Run under this limit of open files (`ulimit -n`, soft and hard: Node raises its soft limit to the hard one). */
  readonly descriptorLimit?: number
}

/**
 * Starts `node …args` with exactly `env` (plus PATH and HOME): nothing else of the caller's
 * environment leaks in, so a DATABASE_URL in the shell cannot change what is measured.
 */
export async function startServer(spec: ServerSpec): Promise<Server> {
  const node = [process.execPath, ...spec.args]
  const [command, ...args] =
    spec.descriptorLimit === undefined
      ? node
      : ['bash', '-c', `ulimit -n ${spec.descriptorLimit} && exec "$@"`, 'bash', ...node]
  const child = track(
    spawn(command as string, args, {
      cwd: repoRoot,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...spec.env, PORT: String(spec.port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  )
  const output = { bytes: 0, lines: 0 }
  // The log is drained as fast as it comes (a log shipper reading the pipe), counted, not kept.
  child.stdout?.on('data', (chunk: Buffer) => {
    output.bytes += chunk.length
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) output.lines++
  })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4096)
  })
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once('exit', () => resolve())
  })
  const url = `http://127.0.0.1:${spec.port}`
  const server: Server = {
    name: spec.name,
    child,
    pid: child.pid ?? -1,
    url,
    output,
    stderrTail: () => stderr,
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await exited
      clearTimeout(timer)
    },
  }
  try {
    await waitUntilAnswering(server, exited)
  } catch (error) {
    await server.stop(1000)
    throw error
  }
  return server
}

async function waitUntilAnswering(server: Server, exited: Promise<void>, timeoutMs = 20_000): Promise<void> {
  let gone = false
  void exited.then(() => {
    gone = true
  })
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (gone) {
      throw new Error(`${server.name} exited before it answered:\n${server.stderrTail()}`)
    }
    try {
      const response = await fetch(`${server.url}/`, { signal: AbortSignal.timeout(1000) })
      await response.arrayBuffer()
      return
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  throw new Error(`${server.name} did not answer within ${timeoutMs} ms:\n${server.stderrTail()}`)
}

/** Resets the process's peak RSS to its current RSS (Linux ≥ 4.0); false when not possible. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

/**
 * CPU time the process has used so far (user + system), in seconds; NaN when /proc cannot tell.
 * Per request, it is a figure that holds on a busy machine, where throughput does not.
 */
export function cpuSeconds(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
  } catch {
    return Number.NaN
  }
}
/** USER_HZ: /proc counts CPU time in these ticks on every Linux architecture. */
const CLOCK_TICKS_PER_SECOND = 100

/** The process's peak RSS (VmHWM) in MB; NaN when /proc cannot tell. */
export const peakRssMb = (pid: number) => statusFieldMb(pid, 'VmHWM')

/** The process's current RSS (VmRSS) in MB; NaN when /proc cannot tell. */
export const rssMb = (pid: number) => statusFieldMb(pid, 'VmRSS')

function statusFieldMb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) / 1024 : Number.NaN
  } catch {
    return Number.NaN
  }
}

export interface LoadGenerator {
  run(job: Omit<LoadJob, 'id'>): Promise<LoadResult>
  close(): void
}

/** Forks the load generator (bench/load-worker.ts, through tsx). */
export function startLoadGenerator(): LoadGenerator {
  const child = track(
    fork(fileURLToPath(new URL('./load-worker.ts', import.meta.url)), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  )
  let nextId = 1
  const pending = new Map<number, { resolve: (r: LoadResult) => void; reject: (e: Error) => void }>()
  child.on('message', (reply: LoadReply) => {
    const waiter = pending.get(reply.id)
    pending.delete(reply.id)
    if (!waiter) return
    if (reply.ok) waiter.resolve(reply.result)
    else waiter.reject(new Error(`load generator: ${reply.error}`))
  })
  child.on('exit', (code, signal) => {
    for (const waiter of pending.values()) waiter.reject(new Error(`load generator exited (${code ?? signal})`))
    pending.clear()
  })
  return {
    run(job) {
      const id = nextId++
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject })
        child.send({ ...job, id } satisfies LoadJob)
      })
    },
    close() {
      child.disconnect()
    },
  }
}
