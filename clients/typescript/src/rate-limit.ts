import { parseList } from 'structured-headers'

/** A rate-limit policy the gateway announced (RateLimit-Policy): at most `quota` requests in any `windowSeconds`. */
export interface RateLimitPolicy {
  readonly name: string
  readonly quota: number
  readonly windowSeconds: number | undefined
}

/**
 * The rate-limit state an answer showed: the policy that applied, the requests left under it, and
 * when more quota is available. Read from the current IETF draft's structured fields (`RateLimit`,
 * `RateLimit-Policy`) when present, else from the 2021 headers (`RateLimit-Limit`, `-Remaining`,
 * `-Reset`).
 */
export interface RateLimitState {
  /** The name of the policy that applied (`default`, `1m`, …); undefined from the 2021 headers. */
  readonly policy: string | undefined
  /** The quota of the policy that applied. */
  readonly limit: number | undefined
  readonly remaining: number
  /** Seconds until more quota is available; undefined when nothing is used (or not said). */
  readonly resetSeconds: number | undefined
  /** Every policy of the budget (a key may have several; the strictest decides). */
  readonly policies: readonly RateLimitPolicy[]
}

interface HeaderSource {
  get(name: string): string | null
}

const integer = (value: unknown) =>
  typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : undefined
const headerInteger = (value: string | null) =>
  value !== null && /^\d+$/.test(value.trim()) ? Number(value) : undefined

function structured(headers: HeaderSource): RateLimitState | undefined {
  const field = headers.get('ratelimit')
  if (field === null) return undefined
  let policies: RateLimitPolicy[] = []
  let item: [unknown, Map<string, unknown>] | undefined
  try {
    item = parseList(field)[0] as [unknown, Map<string, unknown>] | undefined
    const announced = headers.get('ratelimit-policy')
    if (announced !== null) {
      policies = parseList(announced).flatMap(([name, params]) => {
        const quota = integer(params.get('q'))
        if (typeof name !== 'string' || quota === undefined) return []
        return [{ name, quota, windowSeconds: integer(params.get('w')) }]
      })
    }
  } catch {
    return undefined
  }
  if (item === undefined || typeof item[0] !== 'string') return undefined
  const [name, params] = item
  const remaining = integer(params.get('r'))
  if (remaining === undefined) return undefined
  return {
    policy: name,
    limit: policies.find((policy) => policy.name === name)?.quota ?? headerInteger(headers.get('ratelimit-limit')),
    remaining,
    resetSeconds: integer(params.get('t')),
    policies,
  }
}

function legacy(headers: HeaderSource): RateLimitState | undefined {
  const remaining = headerInteger(headers.get('ratelimit-remaining'))
  if (remaining === undefined) return undefined
  const limit = headerInteger(headers.get('ratelimit-limit'))
  const reset = headerInteger(headers.get('ratelimit-reset'))
  return {
    policy: undefined,
    limit,
    remaining,
    resetSeconds: reset === 0 ? undefined : reset,
    policies: limit === undefined ? [] : [{ name: 'default', quota: limit, windowSeconds: undefined }],
  }
}

/** The rate-limit state of an answer's headers; undefined when it carried none. */
export function rateLimitOf(headers: HeaderSource): RateLimitState | undefined {
  return structured(headers) ?? legacy(headers)
}
