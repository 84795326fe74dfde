import type { Clock } from '../../src/index.js'

interface Timer {
  id: number
  at: number
  ms: number
  callback: () => void
}

/**
 * A clock that moves only when the test says so: the client's waits and timeouts run on it, so no
 * test sleeps for real and every delay can be asserted to the millisecond.
 */
export class FakeClock implements Clock {
  #now = Date.parse('2030-01-01T00:00:00.000Z')
  #nextId = 1
  readonly #timers = new Map<number, Timer>()

  now(): number {
    return this.#now
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.#nextId++
    this.#timers.set(id, { id, at: this.#now + ms, ms, callback })
    return id
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number)
  }

  /** The timers still pending, soonest first: their durations as scheduled. */
  pending(): number[] {
    return [...this.#timers.values()].sort((a, b) => a.at - b.at).map((timer) => timer.ms)
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const until = this.#now + ms
    for (;;) {
      const due = [...this.#timers.values()].filter((timer) => timer.at <= until).sort((a, b) => a.at - b.at)[0]
      if (!due) break
      this.#timers.delete(due.id)
      this.#now = due.at
      due.callback()
    }
    this.#now = until
  }
}

/** A random source that returns `values` in turn (then repeats the last). */
export function sequence(...values: number[]): () => number {
  let index = 0
  return () => values[Math.min(index++, values.length - 1)] ?? 0
}
