import autocannon from 'autocannon'
import { LatencyHistogram, type LatencySummary } from './stats.js'

/**
 * The load generator, in its own process (forked by bench/run.ts) so it never shares an event loop
 * with a server or with the harness. It runs one autocannon job per message and answers with a
 * summary; it exits when the harness goes away.
 */

export interface LoadJob {
  readonly id: number
  readonly url: string
  readonly headers: Record<string, string>
  readonly connections: number
  readonly durationS: number
  /** Requests per second in all, spread over the connections; as fast as answered when omitted. */
  readonly overallRate?: number
}

export interface LoadResult {
  readonly requestsPerSec: number
  readonly requests: number
  readonly durationS: number
  readonly errors: number
  readonly timeouts: number
  readonly statusCounts: Record<string, number>
  readonly latency: LatencySummary
}

export type LoadReply =
  | { readonly id: number; readonly ok: true; readonly result: LoadResult }
  | { readonly id: number; readonly ok: false; readonly error: string }

async function runJob(job: LoadJob): Promise<LoadResult> {
  const histogram = new LatencyHistogram()
  const instance = autocannon({
    url: job.url,
    connections: job.connections,
    duration: job.durationS,
    pipelining: 1,
    timeout: 10,
    headers: job.headers,
    ...(job.overallRate === undefined ? {} : { overallRate: job.overallRate }),
  })
  instance.on('response', (_client, _status, _bytes, responseTimeMs) => histogram.record(responseTimeMs))
  const result = await instance
  const statusCounts: Record<string, number> = {}
  for (const [status, { count }] of Object.entries(result.statusCodeStats)) statusCounts[status] = count
  return {
    requestsPerSec: result.requests.average,
    requests: result.requests.total,
    durationS: result.duration,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCounts,
    latency: histogram.summary(),
  }
}

if (process.send) {
  process.on('message', (job: LoadJob) => {
    runJob(job).then(
      (result) => process.send?.({ id: job.id, ok: true, result } satisfies LoadReply),
      (error: unknown) => process.send?.({ id: job.id, ok: false, error: String(error) } satisfies LoadReply),
    )
  })
  process.on('disconnect', () => process.exit(0))
}
