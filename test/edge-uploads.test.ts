import t from 'tap'
import { DEMO_STUDIOS } from '../lib/demo-seed.js'
import { cliEntry, startGatewayProcess } from './helpers/hostile.js'

// A refusal sent while the client is still uploading reaches it: the lingering close reads (then
// ignores) the rest of the body until the client has read the answer, instead of resetting it.

t.test('60 fetch calls with a 3 MB body all read the 400 envelope (no EPIPE, no reset)', async (t) => {
  // The gateway in a process of its own, as clients across a network see it: in this process, the
  // clients would share its event loop, and read their answers in step with it.
  // The default bounds: what a client of a deployed gateway meets.
  const gateway = await startGatewayProcess(t, cliEntry, ['serve'], {})
  const body = Buffer.alloc(3 * 1024 * 1024, 'a')
  const outcomes = await Promise.all(
    Array.from({ length: 60 }, async () => {
      try {
        const response = await fetch(`${gateway.origin}/v1/studios/${DEMO_STUDIOS[0]?.id}/stream/go-live`, {
          method: 'POST',
          headers: { authorization: `Bearer ${gateway.key}`, 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(10_000),
        })
        const parsed = (await response.json()) as { error?: { code?: string } }
        return `${response.status} ${parsed.error?.code}`
      } catch (error) {
        const cause = (error as { cause?: { code?: string } }).cause
        return `failed: ${cause?.code ?? (error as Error).message}`
      }
    }),
  )
  const tally: Record<string, number> = {}
  for (const outcome of outcomes) tally[outcome] = (tally[outcome] ?? 0) + 1
  t.same(tally, { '400 invalid_request': 60 }, 'every client read the envelope')
})
