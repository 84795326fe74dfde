import { readFileSync } from 'node:fs'
import { getHeapStatistics } from 'node:v8'

/**
 * File descriptors: the process's limit (what the connection cap is derived from), and surviving
 * their exhaustion. Every socket, and every file the process opens (even to read its own memory
 * use from /proc), needs one; past the limit the call fails with EMFILE (ENFILE: the whole system
 * is out). Such a failure is transient — descriptors come back as connections close — so it must
 * shed load, never end the process.
 */

/** Descriptors the process keeps beyond client connections: the store, the log, Redis, the upstream pool (64), Node itself. */
export const DESCRIPTOR_RESERVE = 128
/** Connections past the cap that are still read and answered 503 before Node refuses the rest outright. */
export const REFUSAL_BAND = 64

/** The soft RLIMIT_NOFILE (`ulimit -n`) from /proc/self/limits; undefined where that cannot be read. */
export function readDescriptorLimit(limitsText?: string): number | undefined {
  let text = limitsText
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8')
    } catch {
      return undefined
    }
  }
  const match = /^Max open files\s+(\S+)\s+/m.exec(text)
  if (!match) return undefined
  if (match[1] === 'unlimited') return Number.MAX_SAFE_INTEGER
  const limit = Number(match[1])
  return Number.isSafeInteger(limit) && limit > 0 ? limit : undefined
}

/** When /proc cannot tell (not Linux): the common default soft limit. */
const ASSUMED_DESCRIPTOR_LIMIT = 1024

/** The most client connections the descriptor limit allows: the limit less the reserve and the refusal band. */
export function connectionCeiling(limit = readDescriptorLimit() ?? ASSUMED_DESCRIPTOR_LIMIT): number {
  return limit - DESCRIPTOR_RESERVE - REFUSAL_BAND
}

/** An error (or one of its causes) that says the process or the system is out of file descriptors. */
export function isDescriptorExhaustion(error: unknown): boolean {
  let current = error
  for (let depth = 0; depth < 4 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code
    if (code === 'EMFILE' || code === 'ENFILE') return true
    current = (current as { cause?: unknown }).cause
  }
  return false
}

export type ExhaustionSite = 'accept' | 'memory_sample' | 'request' | 'uncaught'

/**
 * Times descriptors ran out since start, by where it was noticed; process-wide (the memory sample
 * and the uncaught-error net are), read by every app's metrics.
 */
export const descriptorExhaustion: Record<ExhaustionSite, number> = {
  accept: 0,
  memory_sample: 0,
  request: 0,
  uncaught: 0,
}

const guarded = Symbol('studio-gateway.memoryUsageGuarded')

/**
 * `process.memoryUsage()` reads /proc/self/stat, so it throws EMFILE when descriptors are out. Load
 * shedding (`@fastify/under-pressure`) calls it from its sampling timer, where the throw ended the
 * process, and the sampling with it. Guarded, it answers from what needs no descriptor instead:
 * V8's heap figures now, the last resident set size read. Installed once per process.
 */
export function guardMemoryUsage(): void {
  const original = process.memoryUsage as typeof process.memoryUsage & { [guarded]?: true }
  if (original[guarded]) return
  let last: NodeJS.MemoryUsage = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 }
  const withoutDescriptors = (error: unknown): NodeJS.MemoryUsage => {
    if (!isDescriptorExhaustion(error)) throw error
    descriptorExhaustion.memory_sample++
    const heap = getHeapStatistics()
    return { ...last, heapTotal: heap.total_heap_size, heapUsed: heap.used_heap_size, external: heap.external_memory }
  }
  const memoryUsage = () => {
    try {
      last = original.call(process)
      return last
    } catch (error) {
      return withoutDescriptors(error)
    }
  }
  memoryUsage.rss = () => {
    try {
      return original.rss()
    } catch (error) {
      return withoutDescriptors(error).rss
    }
  }
  process.memoryUsage = Object.assign(memoryUsage, { [guarded]: true as const })
}
