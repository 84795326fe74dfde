/**
 * The tables as Kysely sees them. One schema for SQLite and PostgreSQL: times are RFC 3339 UTC
 * strings with milliseconds (`2026-11-25T09:30:00.000Z`), which sort correctly as text in both.
 */

export interface ApiKeysTable {
  id: string
  hash: string
  prefix: string
  account_id: string
  /** `live` or `test` (a sandbox key). */
  mode: 'live' | 'test'
  /** Space-separated scope names. */
  scopes: string
  created_at: string
  expires_at: string | null
  revoked_at: string | null
  last_used_at: string | null
  /** The key's own rate-limit policies, JSON `[{"max":…,"windowMs":…}, …]`; null for the gateway's default. */
  rate_limits: string | null
  /** A name for people; null for keys minted before names existed. */
  name: string | null
  /** Who minted the key: the id of the key that called the API, or `cli` (the command line, the demo seed). */
  created_by: string
  /** The key that replaced this one when it was rolled; null until then. */
  replaced_by: string | null
}

export interface StudiosTable {
  id: string
  account_id: string
  /** `live`, or `test`: a studio of the account's sandbox, seen only by its test keys. */
  mode: 'live' | 'test'
  name: string
  created_at: string
}

export interface StreamsTable {
  studio_id: string
  status: 'offline' | 'live'
  title: string | null
  started_at: string | null
  updated_at: string
}

export interface SessionsTable {
  id: string
  studio_id: string
  title: string | null
  started_at: string
  ended_at: string | null
}

export interface SettingsTable {
  name: string
  value: string
}

export interface IdempotencyRecordsTable {
  key_id: string
  /** HMAC-SHA-256 (hex) of the client's Idempotency-Key under the server's secret, never the key itself. */
  idempotency_key: string
  /** SHA-256 (hex) of what the request asked for: method, route, studio id and body. */
  fingerprint: string
  /** Null while the first request runs (a claim); the answer's status once it is stored. */
  status_code: number | null
  /** The answer, sealed with a key derived from the client's Idempotency-Key (lib/sealed-answers.ts). */
  body: string | null
  created_at: string
}

export interface Database {
  idempotency_records: IdempotencyRecordsTable
  api_keys: ApiKeysTable
  studios: StudiosTable
  streams: StreamsTable
  sessions: SessionsTable
  settings: SettingsTable
}
