import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fmt, markdownTable } from './stats.js'

/**
 * Summarises a V8 `.cpuprofile` (what `node --cpu-prof` writes): self time by function, by package
 * (fastify, pino, kysely, better-sqlite3, our code, node core…) and by file, and the inclusive time
 * of our own functions, each also in µs per request when the request count is known.
 */

export interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
  readonly columnNumber: number
}

export interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: readonly number[]
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[]
  /** Microseconds, on the monotonic clock (the same as `process.hrtime`). */
  readonly startTime: number
  readonly endTime: number
  readonly samples: readonly number[]
  readonly timeDeltas: readonly number[]
}

export interface SummaryOptions {
  /** Only samples taken inside this window (µs, the profile's clock) count; the whole profile otherwise. */
  readonly window?: { readonly startUs: number; readonly endUs: number }
  /** Requests served inside the window, to express costs per request. */
  readonly requests?: number
  /** The repository root, so our files show as `dist/plugins/auth.js` rather than a full URL. */
  readonly root?: string
}

export interface Row {
  readonly name: string
  readonly package?: string
  readonly ms: number
  /** Share of the busy (non-idle) time, 0–1. */
  readonly share: number
  readonly usPerRequest: number
}

export interface ProfileSummary {
  readonly sampledMs: number
  readonly idleMs: number
  readonly busyMs: number
  readonly requests: number | undefined
  readonly busyUsPerRequest: number
  readonly byPackage: Row[]
  readonly byFile: Row[]
  readonly byFunction: Row[]
  /** Time with one of our functions anywhere on the stack, by function. */
  readonly oursInclusive: Row[]
}

export const OUR_CODE = 'gateway (our code)'
const SPECIAL = /^\(.*\)$/

interface Frame {
  readonly pkg: string
  readonly file: string
  readonly fn: string
  readonly ours: boolean
}

/** The package a script URL belongs to: the innermost node_modules entry, node core, or our code. */
export function packageOf(url: string, root = ''): { pkg: string; file: string; ours: boolean } {
  if (url.startsWith('node:')) return { pkg: 'node core', file: url, ours: false }
  const path = url.startsWith('file://') ? fileURLToPath(url) : url
  const marker = '/node_modules/'
  const at = path.lastIndexOf(marker)
  if (at >= 0) {
    const rest = path.slice(at + marker.length).split('/')
    const pkg = rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? '?')
    return { pkg, file: `${pkg}/${rest.slice(pkg.split('/').length).join('/')}`, ours: false }
  }
  const prefix = root === '' ? '' : `${root.replace(/\/$/, '')}/`
  if (prefix !== '' && path.startsWith(prefix)) return { pkg: OUR_CODE, file: path.slice(prefix.length), ours: true }
  return { pkg: 'other', file: path, ours: false }
}

/**
 * A node's attribution. Special nodes ("(garbage collector)", "(program)", "(idle)") are their own
 * group; a native function (no URL) is billed to the package of the nearest JavaScript caller, so
 * `better-sqlite3`'s C++ and `crypto`'s hashing land where they are called from.
 */
function frameResolver(profile: CpuProfile, root: string) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parentOf = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id)
  const frames = new Map<number, Frame>()

  function frameOf(id: number): Frame {
    const known = frames.get(id)
    if (known) return known
    const node = byId.get(id)
    let frame: Frame
    if (!node) {
      frame = { pkg: '(unknown)', file: '(unknown)', fn: '(unknown)', ours: false }
    } else {
      const { functionName, url, lineNumber } = node.callFrame
      if (url === '' && SPECIAL.test(functionName)) {
        frame = { pkg: functionName, file: functionName, fn: functionName, ours: false }
      } else if (url === '') {
        const parent = parentOf.get(id)
        const caller = parent === undefined ? undefined : frameOf(parent)
        const pkg = caller && !SPECIAL.test(caller.pkg) ? caller.pkg : 'native'
        frame = { pkg, file: caller?.file ?? 'native', fn: `[native] ${functionName || '(anonymous)'}`, ours: false }
      } else {
        const { pkg, file, ours } = packageOf(url, root)
        frame = { pkg, file, fn: `${functionName || '(anonymous)'} ${file}:${lineNumber + 1}`, ours }
      }
    }
    frames.set(id, frame)
    return frame
  }

  function* ancestry(id: number): Generator<number> {
    for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) yield at
  }

  return { frameOf, ancestry }
}

export function summariseProfile(profile: CpuProfile, options: SummaryOptions = {}): ProfileSummary {
  const { frameOf, ancestry } = frameResolver(profile, options.root ?? '')
  const self = { pkg: new Map<string, number>(), file: new Map<string, number>(), fn: new Map<string, number>() }
  const packageOfKey = new Map<string, string>()
  const inclusive = new Map<string, number>()
  const add = (map: Map<string, number>, key: string, us: number) => map.set(key, (map.get(key) ?? 0) + us)
  let sampledUs = 0
  let idleUs = 0

  // Sample i is taken at startTime + Σ timeDeltas[0..i] and stands for the time until the next one.
  const times: number[] = []
  let clock = profile.startTime
  for (const delta of profile.timeDeltas) {
    clock += delta
    times.push(clock)
  }
  for (let i = 0; i < profile.samples.length; i++) {
    const at = times[i] ?? profile.endTime
    const next = times[i + 1] ?? profile.endTime
    if (options.window && (at < options.window.startUs || at >= options.window.endUs)) continue
    const us = Math.max(0, next - at)
    const id = profile.samples[i] as number
    const frame = frameOf(id)
    sampledUs += us
    if (frame.fn === '(idle)') {
      idleUs += us
      continue
    }
    add(self.pkg, frame.pkg, us)
    add(self.file, frame.file, us)
    add(self.fn, frame.fn, us)
    packageOfKey.set(frame.fn, frame.pkg)
    packageOfKey.set(frame.file, frame.pkg)
    const seen = new Set<string>()
    for (const ancestor of ancestry(id)) {
      const f = frameOf(ancestor)
      if (f.ours && !seen.has(f.fn)) {
        seen.add(f.fn)
        add(inclusive, f.fn, us)
      }
    }
  }

  const busyUs = sampledUs - idleUs
  const requests = options.requests !== undefined && options.requests > 0 ? options.requests : undefined
  const rows = (map: Map<string, number>, withPackage: boolean): Row[] =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([name, us]) => ({
        name,
        ...(withPackage ? { package: packageOfKey.get(name) ?? '?' } : {}),
        ms: us / 1000,
        share: busyUs > 0 ? us / busyUs : 0,
        usPerRequest: requests === undefined ? Number.NaN : us / requests,
      }))

  return {
    sampledMs: sampledUs / 1000,
    idleMs: idleUs / 1000,
    busyMs: busyUs / 1000,
    requests,
    busyUsPerRequest: requests === undefined ? Number.NaN : busyUs / requests,
    byPackage: rows(self.pkg, false),
    byFile: rows(self.file, true),
    byFunction: rows(self.fn, true),
    oursInclusive: rows(inclusive, false),
  }
}

export function formatSummary(summary: ProfileSummary, title: string, top = 25): string {
  const pct = (share: number) => `${fmt(share * 100, 1)} %`
  const us = (row: Row) => fmt(row.usPerRequest, 1)
  const perRequest = summary.requests === undefined ? '' : `, ${fmt(summary.requests)} requests`
  const out = [
    `### ${title}`,
    '',
    `Sampled ${fmt(summary.sampledMs)} ms: busy ${fmt(summary.busyMs)} ms, idle ${fmt(summary.idleMs)} ms${perRequest}` +
      (summary.requests === undefined ? '.' : `: ${fmt(summary.busyUsPerRequest, 1)} µs of CPU per request.`),
    '',
    'Self time by package (native code billed to its JavaScript caller):',
    '',
    markdownTable(
      ['package', 'self ms', 'share of busy', 'µs/request'],
      summary.byPackage.slice(0, top).map((r) => [r.name, fmt(r.ms), pct(r.share), us(r)]),
    ),
    '',
    `Top ${top} functions by self time:`,
    '',
    markdownTable(
      ['function', 'package', 'self ms', 'share', 'µs/request'],
      summary.byFunction.slice(0, top).map((r) => [r.name, r.package ?? '', fmt(r.ms), pct(r.share), us(r)]),
    ),
    '',
    `Top ${top} files by self time:`,
    '',
    markdownTable(
      ['file', 'package', 'self ms', 'share', 'µs/request'],
      summary.byFile.slice(0, top).map((r) => [r.name, r.package ?? '', fmt(r.ms), pct(r.share), us(r)]),
    ),
    '',
    'Our functions by inclusive time (the function and everything it calls):',
    '',
    markdownTable(
      ['function', 'total ms', 'share', 'µs/request'],
      summary.oursInclusive.slice(0, top).map((r) => [r.name, fmt(r.ms), pct(r.share), us(r)]),
    ),
    '',
  ]
  return out.join('\n')
}

/**
 * The gateway's CPU per request beside the bare server's, by package: what the pipeline adds. Both
 * summaries need their request counts.
 */
export function formatComparison(gateway: ProfileSummary, bare: ProfileSummary): string {
  const perRequest = (summary: ProfileSummary) => new Map(summary.byPackage.map((r) => [r.name, r.usPerRequest]))
  const g = perRequest(gateway)
  const b = perRequest(bare)
  const names = [...new Set([...g.keys(), ...b.keys()])]
  const delta = (name: string) => (g.get(name) ?? 0) - (b.get(name) ?? 0)
  names.sort((x, y) => delta(y) - delta(x))
  const rows = names.map((name) => [name, fmt(g.get(name) ?? 0, 1), fmt(b.get(name) ?? 0, 1), fmt(delta(name), 1)])
  rows.push([
    '**total busy**',
    fmt(gateway.busyUsPerRequest, 1),
    fmt(bare.busyUsPerRequest, 1),
    fmt(gateway.busyUsPerRequest - bare.busyUsPerRequest, 1),
  ])
  return [
    'CPU per request, gateway beside bare Fastify (µs of self time; native code billed to its caller):',
    '',
    markdownTable(['package', 'gateway µs/req', 'bare µs/req', 'added µs/req'], rows),
    '',
  ].join('\n')
}

// `tsx bench/profile-summary.ts FILE.cpuprofile [REQUESTS]`: summarise a profile taken by hand.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [file, requests] = process.argv.slice(2)
  if (!file) {
    process.stderr.write('usage: tsx bench/profile-summary.ts FILE.cpuprofile [REQUESTS]\n')
    process.exit(2)
  }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const root = fileURLToPath(new URL('..', import.meta.url))
  const summary = summariseProfile(profile, { root, ...(requests ? { requests: Number(requests) } : {}) })
  process.stdout.write(formatSummary(summary, file))
}
