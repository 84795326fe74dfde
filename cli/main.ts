import { type ParseArgsConfig, parseArgs } from 'node:util'
import { ConfigError, loadConfig } from '../config.js'
import { isMode, isScope, type Mode, modes, type Scope, scopes } from '../lib/api-keys.js'
import { formatDuration, parseDuration, parseDurationOrZero } from '../lib/duration.js'
import { openInvalidationChannel } from '../lib/key-invalidation/index.js'
import { requireRollable, rollKeyRecord, statusOf } from '../lib/key-management.js'
import { mintKey } from '../lib/mint-key.js'
import { provisionSandbox } from '../lib/sandbox.js'
import { openStore, type StoreOptions } from '../stores/index.js'
import type { KeyRateLimit, KeyRecord, SqlStore, StudioRecord } from '../stores/types.js'

export const usage = `Usage: studio-gateway <command> [options]

Commands:
  serve                                   Start the gateway (what \`npm start\` runs).
  migrate                                 Apply pending database migrations, then exit.
  keys create --account ACCT --scope S [--scope S …] [--expires-in DURATION]
              [--rate-limit N/WINDOW …] [--mode live|test] [--json]
                                          Mint a key; prints its secret once. --mode test mints
                                          a test key (sk_test_…) that sees only the account's
                                          sandbox, which gets two studios if it has none.
  keys list --account ACCT [--json]       List an account's keys (never their secrets).
  keys update KEY_ID [--name NAME] [--scope S …]
              [--rate-limit N/WINDOW … | --default-rate-limit] [--json]
                                          Rename a key, replace its scopes or its rate-limit
                                          policies.
  keys roll KEY_ID [--grace DURATION] [--json]
                                          Mint a successor (same name, scopes, limits, expiry);
                                          prints its secret once. The old secret works for the
                                          grace period (default 24h, 0s for none, at most 7d).
  keys revoke KEY_ID [--json]             Revoke a key.
  studios create --account ACCT --name NAME [--mode live|test] [--json]
                                          --mode test: a sandbox studio, seen by test keys only.
  studios list --account ACCT [--mode live|test] [--json]

Scopes: ${scopes.join(', ')}. Modes: ${modes.join(', ')} (default live).
DURATION: 90s, 15m, 12h, 30d. N/WINDOW: 1000/1m (at most N requests in any WINDOW); several
--rate-limit options give a key several policies (20/1s and 600/1m): the strictest decides.
The store is the one the server uses: DATA_DIR (SQLite) or DATABASE_URL (PostgreSQL).
Changes to a key reach running servers within a second through REDIS_URL or DATABASE_URL (the
servers' invalidation channel), else (the embedded store) within their KEY_CACHE_TTL.
`

class UsageError extends Error {}

export interface CliIo {
  readonly out: NodeJS.WritableStream
  readonly err: NodeJS.WritableStream
  readonly env: Record<string, string | undefined>
}

const ACCOUNT_ID = /^[A-Za-z0-9_-]{1,64}$/

/** Runs one command; resolves to the exit code (serve resolves once listening). */
export async function main(argv: string[], io: CliIo = { out: process.stdout, err: process.stderr, env: process.env }) {
  try {
    return await run(argv, io)
  } catch (error) {
    if (error instanceof UsageError) {
      io.err.write(`error: ${error.message}\n\n${usage}`)
      return 2
    }
    if (error instanceof ConfigError) {
      io.err.write(`${error.message}\n`)
      return 1
    }
    io.err.write(`error: ${describeFailure(error)}\n`)
    return 1
  }
}

/** The message, and its cause's (e.g. "connect ECONNREFUSED 127.0.0.1:5432" behind "the database is unavailable"). */
function describeFailure(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  return error.cause instanceof Error ? `${error.message} (${error.cause.message})` : error.message
}

async function run(argv: string[], io: CliIo): Promise<number> {
  const [command, sub, ...rest] = argv
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    io.out.write(usage)
    return command === undefined ? 2 : 0
  }
  if (command === 'serve') {
    expectNoArguments(argv.slice(1))
    // Loaded only to serve: the other commands answer without loading the HTTP stack.
    const { serve } = await import('../server.js')
    await serve(loadConfig(io.env))
    return 0
  }
  if (command === 'migrate') {
    expectNoArguments(argv.slice(1))
    let applied: readonly string[] = []
    await withStore(io, async () => {}, {
      onMigrated: (names) => {
        applied = names
      },
    })
    io.out.write(migrationReport(applied))
    return 0
  }
  if (command === 'keys' && sub === 'create') return keysCreate(rest, io)
  if (command === 'keys' && sub === 'list') return keysList(rest, io)
  if (command === 'keys' && sub === 'update') return keysUpdate(rest, io)
  if (command === 'keys' && sub === 'revoke') return keysRevoke(rest, io)
  if (command === 'keys' && sub === 'roll') return keysRoll(rest, io)
  if (command === 'studios' && sub === 'create') return studiosCreate(rest, io)
  if (command === 'studios' && sub === 'list') return studiosList(rest, io)
  throw new UsageError(`unknown command: ${[command, sub].filter(Boolean).join(' ')}`)
}

function expectNoArguments(args: string[]) {
  if (args.length > 0) throw new UsageError(`unexpected argument: ${args[0]}`)
}

type OptionsConfig = NonNullable<ParseArgsConfig['options']>

function parse<const O extends OptionsConfig>(args: string[], options: O, positionals = 0) {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>>
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true })
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error))
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(
      positionals === 0 ? `unexpected argument: ${parsed.positionals[0]}` : `expected ${positionals} argument(s)`,
    )
  }
  return parsed
}

/** --mode: live (the default) or test (the sandbox). */
function modeOption(value: string | undefined): Mode {
  if (value === undefined) return 'live'
  if (!isMode(value)) throw new UsageError(`--mode must be one of: ${modes.join(', ')}`)
  return value
}

/** `undefined` when --mode is not given (both modes). */
const modeFilter = (value: string | undefined) => (value === undefined ? undefined : modeOption(value))

function accountOption(value: unknown): string {
  if (typeof value !== 'string') throw new UsageError('--account is required')
  if (!ACCOUNT_ID.test(value)) throw new UsageError('--account must be 1–64 letters, digits, _ or -')
  return value
}

/** What `migrate` applied: each migration by name, or that there was nothing to apply. */
function migrationReport(applied: readonly string[]): string {
  if (applied.length === 0) return 'no pending migration: database is at the latest migration\n'
  const lines = applied.map((name) => `applied migration ${name}\n`)
  return `${lines.join('')}database is at the latest migration (${applied.length} applied)\n`
}

async function withStore<T>(io: CliIo, work: (store: SqlStore) => Promise<T>, options?: StoreOptions): Promise<T> {
  const store = await openStore(loadConfig(io.env), options)
  try {
    return await work(store)
  } finally {
    await store.close()
  }
}

/**
 * `mode` in the JSON of a key or studio of the sandbox only: the documented shapes of live ones
 * stay as they were.
 */
const testMode = (mode: Mode) => (mode === 'test' ? { mode } : {})

const writeJson = (io: CliIo, value: unknown) => io.out.write(`${JSON.stringify(value, null, 2)}\n`)

function parseRateLimit(text: string): KeyRateLimit {
  const match = /^(\d+)\/(.+)$/.exec(text.trim())
  const max = match ? Number(match[1]) : Number.NaN
  const windowMs = match?.[2] ? parseDuration(match[2]) : undefined
  if (!Number.isSafeInteger(max) || max < 1 || windowMs === undefined || windowMs < 1000 || windowMs % 1000 !== 0) {
    throw new UsageError('--rate-limit must be N/WINDOW with a window of whole seconds, such as 1000/1m')
  }
  return { max, windowMs }
}

/** The policies of repeated --rate-limit options; two with one window would be one too many. */
function parseRateLimits(texts: readonly string[] | undefined): KeyRateLimit[] | null {
  if (texts === undefined || texts.length === 0) return null
  const limits = texts.map(parseRateLimit)
  if (new Set(limits.map((limit) => limit.windowMs)).size !== limits.length) {
    throw new UsageError('--rate-limit: give each window once (the stricter of two would make the other useless)')
  }
  return limits.sort((a, b) => a.windowMs - b.windowMs)
}

async function keysCreate(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, {
    account: { type: 'string' },
    scope: { type: 'string', multiple: true },
    'expires-in': { type: 'string' },
    'rate-limit': { type: 'string', multiple: true },
    mode: { type: 'string' },
    name: { type: 'string' },
    json: { type: 'boolean' },
  })
  const accountId = accountOption(values.account)
  const mode = modeOption(values.mode)
  const requested = scopesOption(values.scope)
  if (requested === undefined) throw new UsageError(`at least one --scope is required (${scopes.join(', ')})`)
  const name = nameOption(values.name)
  let expiresAt: string | null = null
  if (values['expires-in'] !== undefined) {
    const ms = parseDuration(values['expires-in'])
    if (ms === undefined) throw new UsageError('--expires-in must be a duration such as 90s, 15m, 12h or 30d')
    expiresAt = new Date(Date.now() + ms).toISOString()
  }
  const rateLimits = parseRateLimits(values['rate-limit'])

  const { record, secret } = mintKey({ accountId, mode, scopes: requested, expiresAt, rateLimits, name })
  const sandbox = await withStore(io, async (store) => {
    // The sandbox first: a test key never exists without one.
    const created = mode === 'test' ? await provisionSandbox(store.studios, accountId) : []
    await store.keys.insert(record)
    return created
  })
  if (values.json) {
    writeJson(io, {
      id: record.id,
      secret,
      prefix: record.prefix,
      accountId: record.accountId,
      scopes: record.scopes,
      expiresAt: record.expiresAt,
      ...testMode(record.mode),
      ...(record.rateLimits ? { rateLimits: describeRateLimits(record.rateLimits) } : {}),
    })
  } else {
    io.out.write(
      `Created ${mode === 'test' ? 'test key ' : ''}${record.id} for ${accountId} (${record.scopes.join(', ')})${expiresAt ? `, expires ${expiresAt}` : ''}.\n` +
        sandbox.map((studio) => `Created sandbox studio ${studio.id} (${studio.name}).\n`).join('') +
        'Secret (shown once, store it now):\n\n' +
        `  ${secret}\n`,
    )
  }
  return 0
}

/** A key's policies as `{ max, window }`; null when the key has the gateway's default. */
function describeRateLimits(limits: readonly KeyRateLimit[] | null) {
  return limits === null ? null : limits.map((limit) => ({ max: limit.max, window: formatDuration(limit.windowMs) }))
}

/** --scope values, checked; undefined when none is given. */
function scopesOption(values: readonly string[] | undefined): Scope[] | undefined {
  if (values === undefined || values.length === 0) return undefined
  const unknown = values.find((s) => !isScope(s))
  if (unknown !== undefined) throw new UsageError(`unknown scope: ${unknown} (known: ${scopes.join(', ')})`)
  return [...new Set(values as Scope[])]
}

/** --name: 1–100 characters, as the API takes it. */
function nameOption(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  const name = value.trim()
  if (name === '' || name.length > 100 || name.includes('\u0000'))
    throw new UsageError('--name must be 1–100 characters')
  return name
}

function keyListing(key: KeyRecord) {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    accountId: key.accountId,
    mode: key.mode,
    scopes: key.scopes,
    status: statusOf(key),
    createdAt: key.createdAt,
    expiresAt: key.expiresAt,
    revokedAt: key.revokedAt,
    lastUsedAt: key.lastUsedAt,
    rateLimits: describeRateLimits(key.rateLimits),
    createdBy: key.createdBy,
    replacedBy: key.replacedBy,
  }
}

async function keysList(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, { account: { type: 'string' }, json: { type: 'boolean' } })
  const accountId = accountOption(values.account)
  const keys = await withStore(io, (store) => store.keys.list(accountId))
  if (values.json) {
    writeJson(io, keys.map(keyListing))
  } else if (keys.length === 0) {
    io.out.write(`No keys for ${accountId}.\n`)
  } else {
    for (const key of keys) {
      const listing = keyListing(key)
      io.out.write(`${key.id}  ${key.prefix}…  ${listing.status.padEnd(7)}  ${key.mode}  ${key.scopes.join(',')}\n`)
    }
  }
  return 0
}

async function keysUpdate(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      name: { type: 'string' },
      scope: { type: 'string', multiple: true },
      'rate-limit': { type: 'string', multiple: true },
      'default-rate-limit': { type: 'boolean' },
      json: { type: 'boolean' },
    },
    1,
  )
  const id = positionals[0] as string
  const given = values['rate-limit'] !== undefined
  if (given && values['default-rate-limit'] === true) {
    throw new UsageError('keys update takes --rate-limit N/WINDOW or --default-rate-limit, not both')
  }
  const changes = {
    ...(values.name === undefined ? {} : { name: nameOption(values.name) }),
    ...(values.scope === undefined ? {} : { scopes: scopesOption(values.scope) }),
    ...(given || values['default-rate-limit'] === true ? { rateLimits: parseRateLimits(values['rate-limit']) } : {}),
  }
  if (Object.keys(changes).length === 0) {
    throw new UsageError('keys update needs --name, --scope, --rate-limit N/WINDOW or --default-rate-limit')
  }
  const key = await withStore(io, (store) => store.keys.update(id, changes))
  if (!key) return noSuchKey(io, id)
  await announceKeyChange(io, key.id)
  if (values.json) writeJson(io, keyListing(key))
  else {
    const policies = describeRateLimits(key.rateLimits)
    const described =
      policies === null ? "the gateway's default" : policies.map((p) => `${p.max}/${p.window}`).join(' and ')
    io.out.write(
      `Updated ${key.id}${key.name === null ? '' : ` (${key.name})`}: scopes ${key.scopes.join(', ')}; rate limit ${described}.\n`,
    )
  }
  return 0
}

function noSuchKey(io: CliIo, id: string): number {
  io.err.write(`error: no key with id ${JSON.stringify(id)}\n`)
  return 1
}

/**
 * Tells the running servers that a key changed, through their invalidation channel (Redis or
 * PostgreSQL); best effort: they see the change within KEY_CACHE_TTL anyway.
 */
async function announceKeyChange(io: CliIo, keyId: string): Promise<void> {
  const config = loadConfig(io.env)
  const quiet = { onKey: () => {}, onResync: () => {}, onError: () => {} }
  const channel = await openInvalidationChannel(config, quiet)
  try {
    await channel.publish(keyId)
  } catch (error) {
    io.err.write(
      `warning: could not tell running servers (${describeFailure(error)}); they see it within KEY_CACHE_TTL\n`,
    )
  } finally {
    await channel.close()
  }
}

const MAX_GRACE_MS = 7 * 86_400_000

async function keysRoll(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, { grace: { type: 'string' }, json: { type: 'boolean' } }, 1)
  const id = positionals[0] as string
  const graceMs = values.grace === undefined ? 86_400_000 : parseDurationOrZero(values.grace)
  if (graceMs === undefined || graceMs > MAX_GRACE_MS || graceMs % 1000 !== 0) {
    throw new UsageError('--grace must be whole seconds from 0s to 7d, such as 0s, 90s, 1h or 24h')
  }
  const rolled = await withStore(io, async (store) => {
    const key = await store.keys.get(id)
    if (!key) return undefined
    const now = Date.now()
    requireRollable(key, now)
    return rollKeyRecord(store.keys, key, { createdBy: 'cli', expiresAt: key.expiresAt, graceMs, now })
  })
  if (!rolled) return noSuchKey(io, id)
  await announceKeyChange(io, id)
  const { old, record, secret } = rolled
  if (values.json) writeJson(io, { ...keyListing(record), secret, replaces: { id: old.id, expiresAt: old.expiresAt } })
  else {
    io.out.write(
      `Rolled ${old.id} into ${record.id}; the old secret works until ${old.expiresAt}.\n` +
        'New secret (shown once, store it now):\n\n' +
        `  ${secret}\n`,
    )
  }
  return 0
}

async function keysRevoke(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1)
  const id = positionals[0] as string
  const key = await withStore(io, (store) => store.keys.revoke(id, new Date().toISOString()))
  if (!key) return noSuchKey(io, id)
  await announceKeyChange(io, key.id)
  if (values.json) writeJson(io, keyListing(key))
  else io.out.write(`Revoked ${key.id} at ${key.revokedAt}.\n`)
  return 0
}

const studioJson = (studio: StudioRecord) => ({
  id: studio.id,
  name: studio.name,
  accountId: studio.accountId,
  createdAt: studio.createdAt,
  ...testMode(studio.mode),
})

async function studiosCreate(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, {
    account: { type: 'string' },
    name: { type: 'string' },
    mode: { type: 'string' },
    json: { type: 'boolean' },
  })
  const accountId = accountOption(values.account)
  const mode = modeOption(values.mode)
  const name = values.name?.trim()
  if (!name || name.length > 200) throw new UsageError('--name is required (1–200 characters)')
  const studio = await withStore(io, (store) => store.studios.createStudio({ accountId, name, mode }))
  if (values.json) writeJson(io, studioJson(studio))
  else
    io.out.write(`Created ${mode === 'test' ? 'sandbox studio ' : ''}${studio.id} (${studio.name}) for ${accountId}.\n`)
  return 0
}

async function studiosList(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, { account: { type: 'string' }, mode: { type: 'string' }, json: { type: 'boolean' } })
  const accountId = accountOption(values.account)
  const mode = modeFilter(values.mode)
  const studios = await withStore(io, (store) => store.studios.listAccountStudios(accountId, mode))
  if (values.json) writeJson(io, studios.map(studioJson))
  else if (studios.length === 0) io.out.write(`No studios for ${accountId}.\n`)
  else for (const studio of studios) io.out.write(`${studio.id}  ${studio.mode}  ${studio.name}  ${studio.createdAt}\n`)
  return 0
}
