import { fork } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../config.js'
import { connectionCeiling, REFUSAL_BAND } from '../lib/descriptors.js'
import type { HostileKind, HostileReport, HostileStart } from './hostile-worker.js'
import type { LoadResult } from './load-worker.js'
import { freePort, killAll, type Server, startLoadGenerator, startServer, track } from './processes.js'
import { seedStore } from './scenarios.js'

/**
 * `npm run soak -- --hostile`: the public edge under hostile clients (docs/edge.md). One gateway
 * (`serve` from dist/, SQLite, the default edge bounds, under `ulimit -n 4096`) takes ordinary
 * keyed traffic at a steady rate, first alone, then while 1,200 slow, dripping and idle sockets
 * are held against it (each replaced as soon as the gateway closes it). Then a second gateway,
 * under `ulimit -n 1024`, gets 1,200 connections at once. Checks: ordinary p99 within 2× of the
 * run without hostile sockets, no hostile socket outlives its documented bound, the gateway's
 * open descriptors stay under its connection cap, no process exits, and after the flood the
 * second gateway serves normally. Exits 1 when a check fails.
 */

const DESCRIPTOR_LIMIT = 4096
const FLOOD_LIMIT = 1024
const FLOOD_CONNECTIONS = 1200
/** Ordinary traffic: a steady rate, well below what the gateway can take, so p99 is service time, not queueing. */
const TRAFFIC = { connections: 8, overallRate: 400 }
const HOSTILE_COUNTS: Record<HostileKind, number> = {
  idle: 250,
  slow_headers: 250,
  drip_body_keyless: 200,
  drip_body_keyed: 250,
  idle_keep_alive: 250,
}
/** Beyond each documented bound: a probe interval of the hostile client, and slack for a busy machine. */
const SLACK_MS = 2500

/** How long each kind may live with the default bounds (docs/edge.md). */
function documentedBounds(): Record<HostileKind, number> {
  const { edge } = loadConfig({})
  const check = 1000
  const linger = edge.lingerTimeoutMs
  return {
    idle: edge.headersTimeoutMs + check + linger + SLACK_MS,
    slow_headers: edge.headersTimeoutMs + check + linger + SLACK_MS,
    drip_body_keyless: linger + SLACK_MS,
    drip_body_keyed: edge.requestTimeoutMs + check + linger + SLACK_MS,
    // Node closes an idle connection a second after the Keep-Alive timeout it announces.
    idle_keep_alive: edge.keepAliveTimeoutMs + 1000 + SLACK_MS,
  }
}

const alive = (server: Server) => server.child.exitCode === null && server.child.signalCode === null

function descriptorsOf(server: Server): number {
  try {
    return readdirSync(`/proc/${server.pid}/fd`).length
  } catch {
    return Number.NaN
  }
}

function startHostileWorker() {
  const child = track(
    fork(fileURLToPath(new URL('./hostile-worker.ts', import.meta.url)), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  )
  const next = <T>(type: string) =>
    new Promise<T>((resolve) => {
      const onMessage = (message: { type: string }) => {
        if (message.type !== type) return
        child.off('message', onMessage)
        resolve(message as T)
      }
      child.on('message', onMessage)
    })
  return {
    start: (message: HostileStart) => child.send(message),
    async held(): Promise<number> {
      const reply = next<{ held: number }>('held')
      child.send({ type: 'held' })
      return (await reply).held
    },
    async stop(): Promise<HostileReport> {
      const reply = next<HostileReport>('report')
      child.send({ type: 'stop' })
      const report = await reply
      child.disconnect()
      return report
    },
  }
}

/** 1,200 raw connections at once, each asking for the studio list; tallies the outcomes. */
async function flood(server: Server, key: string): Promise<{ tally: Record<string, number>; peakDescriptors: number }> {
  const port = Number(new URL(server.url).port)
  const sockets: Socket[] = []
  let peakDescriptors = 0
  const outcomes = await Promise.all(
    Array.from(
      { length: FLOOD_CONNECTIONS },
      () =>
        new Promise<string>((resolve) => {
          const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
          sockets.push(socket)
          let text = ''
          const settle = () => resolve(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 'refused')
          socket.on('data', (chunk: Buffer) => {
            text += chunk.toString('latin1')
            if (text.includes('\r\n\r\n')) settle()
          })
          socket.on('error', () => {})
          socket.once('end', settle)
          socket.once('close', settle)
          setTimeout(() => resolve(text === '' ? 'no answer in 15 s' : 'partial answer'), 15_000)
          socket.write(`GET /v1/studios HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer ${key}\r\n\r\n`)
        }),
    ),
  )
  peakDescriptors = Math.max(peakDescriptors, descriptorsOf(server))
  for (const socket of sockets) socket.destroy()
  const tally: Record<string, number> = {}
  for (const outcome of outcomes) tally[outcome] = (tally[outcome] ?? 0) + 1
  return { tally, peakDescriptors }
}

async function servesNormally(server: Server, studioId: string, key: string): Promise<boolean> {
  // Refused sockets are closed at once; served ones are closed by the flood above. Give the
  // gateway a moment to see every close.
  await sleep(1000)
  for (let i = 0; i < 50; i++) {
    const response = await fetch(`${server.url}/v1/studios/${studioId}`, {
      headers: { authorization: `Bearer ${key}` },
      signal: AbortSignal.timeout(5000),
    }).catch(() => undefined)
    await response?.arrayBuffer()
    if (response?.status !== 200) return false
  }
  return true
}

const ms = (value: number) => `${value.toFixed(2)} ms`

export async function hostileSoak(durationMs: number): Promise<void> {
  const started = Date.now()
  const durationS = Math.max(5, Math.round(durationMs / 1000))
  const dataDir = await mkdtemp(join(tmpdir(), 'soak-hostile-'))
  const floodDir = await mkdtemp(join(tmpdir(), 'soak-flood-'))
  const seed = await seedStore(dataDir)
  const floodSeed = await seedStore(floodDir)
  const env = (dir: string) => ({
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    DATA_DIR: dir,
    RATE_LIMIT_MAX: '1000000000',
  })
  const gateway = await startServer({
    name: 'gateway (hostile)',
    args: ['--max-semi-space-size=4', 'bin/studio-gateway.js', 'serve'],
    env: env(dataDir),
    port: await freePort(),
    descriptorLimit: DESCRIPTOR_LIMIT,
  })
  const cap = connectionCeiling(DESCRIPTOR_LIMIT)
  const load = startLoadGenerator()
  const job = {
    url: `${gateway.url}/v1/studios/${seed.studioId}`,
    headers: { authorization: `Bearer ${seed.fullKey}` },
    ...TRAFFIC,
  }

  let peakDescriptors = 0
  const sampler = setInterval(() => {
    peakDescriptors = Math.max(peakDescriptors, descriptorsOf(gateway) || 0)
  }, 250)

  await load.run({ ...job, durationS: 5 }) // warm-up
  const baseline = await load.run({ ...job, durationS })
  const baselineDescriptors = peakDescriptors

  const bounds = documentedBounds()
  const hostile = startHostileWorker()
  hostile.start({
    type: 'start',
    port: Number(new URL(gateway.url).port),
    key: seed.fullKey,
    studioId: seed.studioId,
    counts: HOSTILE_COUNTS,
    boundsMs: bounds,
  })
  const rampDeadline = Date.now() + 30_000
  while ((await hostile.held()) < 1000 && Date.now() < rampDeadline) await sleep(100)
  const underAttack = await load.run({ ...job, durationS })
  const report = await hostile.stop()
  clearInterval(sampler)
  const gatewayAlive = alive(gateway)
  load.close()
  await gateway.stop()

  // The flood: a second gateway under ulimit -n 1024.
  const flooded = await startServer({
    name: 'gateway (ulimit -n 1024)',
    args: ['--max-semi-space-size=4', 'bin/studio-gateway.js', 'serve'],
    env: env(floodDir),
    port: await freePort(),
    descriptorLimit: FLOOD_LIMIT,
  })
  const floodResult = await flood(flooded, floodSeed.fullKey)
  const floodAliveDuring = alive(flooded)
  const servedAfter = floodAliveDuring && (await servesNormally(flooded, floodSeed.studioId, floodSeed.fullKey))
  const floodAlive = alive(flooded)
  await flooded.stop()
  killAll()
  await rm(dataDir, { recursive: true, force: true })
  await rm(floodDir, { recursive: true, force: true })

  // ------------------------------------------------------------ report
  const p99Ratio = underAttack.latency.p99Ms / baseline.latency.p99Ms
  const overBound = Object.values(report.kinds).reduce((sum, kind) => sum + kind.overBound, 0)
  const failures = (result: LoadResult) =>
    result.errors +
    result.timeouts +
    Object.entries(result.statusCounts).reduce((n, [s, c]) => n + (s === '200' ? 0 : c), 0)
  const lines = [
    `soak --hostile: ${durationS} s of ordinary traffic (${TRAFFIC.overallRate} req/s on ${TRAFFIC.connections} connections) alone, then ${durationS} s under ${Object.values(HOSTILE_COUNTS).reduce((a, b) => a + b, 0)} hostile sockets`,
    `gateway: ulimit -n ${DESCRIPTOR_LIMIT}, MAX_CONNECTIONS ${cap} (derived), default edge bounds`,
    '',
    '| ordinary traffic | requests | not 200 | p50 | p99 | max |',
    '| --- | --- | --- | --- | --- | --- |',
    `| alone | ${baseline.requests} | ${failures(baseline)} | ${ms(baseline.latency.p50Ms)} | ${ms(baseline.latency.p99Ms)} | ${ms(baseline.latency.maxMs)} |`,
    `| with hostile sockets | ${underAttack.requests} | ${failures(underAttack)} | ${ms(underAttack.latency.p50Ms)} | ${ms(underAttack.latency.p99Ms)} | ${ms(underAttack.latency.maxMs)} |`,
    '',
    `p99 with hostile sockets / alone: ${p99Ratio.toFixed(2)} (bound 2)`,
    `hostile sockets held at once: ${report.minHeld}–${report.maxHeld} (at least 1000)`,
    '',
    '| hostile kind | opened | closed by the gateway | longest life | bound | past the bound | first answers |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ]
  for (const [kind, k] of Object.entries(report.kinds) as Array<[HostileKind, (typeof report.kinds)[HostileKind]]>) {
    const answers = Object.entries(k.answers)
      .map(([status, n]) => `${status}: ${n}`)
      .join(', ')
    lines.push(
      `| ${kind} | ${k.opened} | ${k.closed} | ${(k.maxLifetimeMs / 1000).toFixed(1)} s | ${(bounds[kind] / 1000).toFixed(1)} s | ${k.overBound} | ${answers} |`,
    )
  }
  lines.push(
    '',
    `open descriptors of the gateway: at most ${peakDescriptors} (${baselineDescriptors} without hostile sockets); MAX_CONNECTIONS ${cap}, limit ${DESCRIPTOR_LIMIT}`,
    `gateway alive throughout: ${gatewayAlive}`,
    '',
    `ulimit -n ${FLOOD_LIMIT}: ${FLOOD_CONNECTIONS} connections at once → ${JSON.stringify(floodResult.tally)}; open descriptors ${floodResult.peakDescriptors} of ${FLOOD_LIMIT} (MAX_CONNECTIONS ${connectionCeiling(FLOOD_LIMIT)} served, ${REFUSAL_BAND} answered 503, the rest refused)`,
    `alive during the flood: ${floodAliveDuring}; 50 ordinary requests after it all 200: ${servedAfter}; alive after: ${floodAlive}`,
  )
  const failed =
    !(p99Ratio <= 2) ||
    overBound > 0 ||
    report.minHeld < 1000 ||
    !(peakDescriptors < cap) ||
    !gatewayAlive ||
    !floodAliveDuring ||
    !servedAfter ||
    !floodAlive ||
    floodResult.tally['no answer in 15 s'] !== undefined ||
    failures(baseline) > 0 ||
    failures(underAttack) > 0
  lines.push(`soak --hostile: ${failed ? 'FAILED' : 'passed'} (${((Date.now() - started) / 1000).toFixed(1)} s in all)`)
  process.stdout.write(`${lines.join('\n')}\n`)
  process.exitCode = failed ? 1 : 0
}
