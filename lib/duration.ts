import { parse } from '@lukeed/ms'

// A number followed by a unit, e.g. `90s`, `1.5h`, `1 minute`. A bare number is refused: is
// `30` seconds or milliseconds? Write `30s` or `30000ms`.
const DURATION_SHAPE = /^\d+(\.\d+)?\s*[a-z]+$/i

/**
 * Parses a human duration (`90s`, `15m`, `12h`, `30d`, `1 minute`, `250ms`) into whole
 * milliseconds. Returns undefined for anything else, including zero, negative values and
 * bare numbers.
 */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim()
  if (trimmed.length > 32 || !DURATION_SHAPE.test(trimmed)) return undefined
  const ms = parse(trimmed)
  if (ms === undefined || !Number.isFinite(ms) || ms <= 0) return undefined
  return Math.round(ms)
}

/** Like parseDuration, but zero (`0`, `0s`) is allowed: used where zero means "off". */
export function parseDurationOrZero(text: string): number | undefined {
  return /^0+\s*[a-z]*$/i.test(text.trim()) ? 0 : parseDuration(text)
}

/** `60000` → `1m`, `90000` → `90s`: the shortest exact spelling, for messages and listings. */
export function formatDuration(ms: number): string {
  const units: Array<[string, number]> = [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ]
  for (const [unit, size] of units) {
    if (ms % size === 0) return `${ms / size}${unit}`
  }
  return `${ms}ms`
}
