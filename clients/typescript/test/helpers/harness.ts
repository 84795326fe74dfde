import type { Test } from 'tap'
import { type ClientEvent, type ClientOptions, StudioGatewayClient, StudioGatewayError } from '../../src/index.js'
import { FakeClock } from './fake-clock.js'

export interface Harness {
  client: StudioGatewayClient
  clock: FakeClock
  events: ClientEvent[]
  /** The delays of the retries the client scheduled, in order. */
  delays(): number[]
  /** The first call resolves with the first event of `type`, the second with the second… (waiting for it). */
  next<T extends ClientEvent['type']>(type: T): Promise<Extract<ClientEvent, { type: T }>>
}

export interface HarnessOptions extends Partial<ClientOptions> {
  /**
   * Advance the fake clock by each scheduled retry delay as soon as it is scheduled (default), so
   * a call runs to its end without the test stepping time by hand.
   */
  autoAdvance?: boolean
}

/** A client on a fake clock, recording its events. Jitter draws 0.5 unless `random` is given. */
export function harness(baseUrl: string, options: HarnessOptions = {}): Harness {
  const { autoAdvance = true, ...clientOptions } = options
  const clock = new FakeClock()
  const events: ClientEvent[] = []
  const asked = new Map<string, number>()
  const waiters: Array<{ type: string; index: number; resolve: (event: ClientEvent) => void }> = []
  const ofType = (type: string) => events.filter((event) => event.type === type)
  const client = new StudioGatewayClient({
    baseUrl,
    apiKey: TEST_KEY,
    clock,
    random: () => 0.5,
    ...clientOptions,
    onEvent: (event) => {
      events.push(event)
      const index = ofType(event.type).length - 1
      for (const waiter of waiters) if (waiter.type === event.type && waiter.index === index) waiter.resolve(event)
      // After the client has set its timer: it does so right after emitting the event.
      if (autoAdvance && event.type === 'retry') setImmediate(() => clock.advance(event.delayMs))
      clientOptions.onEvent?.(event)
    },
  })
  return {
    client,
    clock,
    events,
    delays: () => events.flatMap((event) => (event.type === 'retry' ? [event.delayMs] : [])),
    next: (type) => {
      const index = asked.get(type) ?? 0
      asked.set(type, index + 1)
      const recorded = ofType(type)[index]
      if (recorded) return Promise.resolve(recorded as never)
      return new Promise((resolve) => waiters.push({ type, index, resolve: resolve as (event: ClientEvent) => void }))
    },
  }
}

/** A well-formed key for servers that do not check it. */
export const TEST_KEY = 'sk_live_0123456789abcdefghijklmnopqrstuvABCDEF'

/** The StudioGatewayError a call rejects with (fails the test if it resolves or throws another error). */
export async function failure(t: Test, call: Promise<unknown>): Promise<StudioGatewayError> {
  try {
    const value = await call
    t.fail(`expected a StudioGatewayError, got ${JSON.stringify(value)}`)
  } catch (error) {
    if (error instanceof StudioGatewayError) return error
    t.fail(`expected a StudioGatewayError, got ${String(error)}`)
  }
  throw new Error('the call did not fail with a StudioGatewayError')
}
