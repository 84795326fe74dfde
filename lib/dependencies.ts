import { withDeadline } from './deadline.js'

/**
 * The external dependencies of a running gateway (the key store, Redis, the upstream studio
 * service), each with a cheap check. Readiness probes and operators ask them all at once; each
 * feature registers its own dependency where it is set up.
 */
export interface DependencyStatus {
  readonly name: string
  readonly ok: boolean
  /** Why the check failed: a short, safe description (never a URL or credential). */
  readonly error?: string
  readonly latencyMs: number
}

export interface DependencyRegistryOptions {
  /** Told the outcome of every check (metrics count failures and keep the last state). */
  readonly onResult?: (status: DependencyStatus) => void
}

export function createDependencyRegistry(options: DependencyRegistryOptions = {}) {
  const checks = new Map<string, () => Promise<void>>()

  return {
    /** Registers (or replaces) the check of a named dependency. It should reject when down. */
    register(name: string, check: () => Promise<void>) {
      checks.set(name, check)
    },

    names: () => [...checks.keys()],

    /** Runs every check concurrently; each is bounded by `timeoutMs`. */
    async checkAll(timeoutMs = 1000): Promise<DependencyStatus[]> {
      const statuses = await Promise.all(
        [...checks].map(async ([name, check]): Promise<DependencyStatus> => {
          const started = performance.now()
          try {
            await withDeadline(check(), timeoutMs, () => new Error(`no answer within ${timeoutMs} ms`))
            return { name, ok: true, latencyMs: Math.round(performance.now() - started) }
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error)
            return { name, ok: false, error: message.slice(0, 200), latencyMs: Math.round(performance.now() - started) }
          }
        }),
      )
      for (const status of statuses) options.onResult?.(status)
      return statuses
    },
  }
}

export type DependencyRegistry = ReturnType<typeof createDependencyRegistry>
