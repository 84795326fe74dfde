import { LRUCache } from 'lru-cache'

/**
 * The rate-limit algorithm: a sliding window counted in slots. A policy allows at most `max`
 * requests in any `windowMs` milliseconds. The window is cut into SLOTS slots; a request at time t
 * falls in slot ⌊t·SLOTS / windowMs⌋ and is counted against every request of that slot and of the
 * SLOTS slots before it, which together cover (t − windowMs, t] and a little more. So:
 *
 *   - never more than `max` requests are allowed in any interval of `windowMs` (there is no burst
 *     at a window boundary: no boundary exists);
 *   - a request is refused at most `windowMs / SLOTS` earlier than an exact log of every request
 *     would refuse it (the oldest slot counts whole), which is the tolerance, on the safe side.
 *
 * The same arithmetic runs in memory (`createMemoryWindows`) and in Redis (`SLIDING_WINDOW_SCRIPT`,
 * one script call for every policy of a decision, and for every request of a partition that arrived
 * in the same turn of the event loop).
 */
export const SLOTS = 20

export interface RatePolicy {
  /** Its name in the RateLimit-Policy and RateLimit fields (a structured-field string). */
  readonly name: string
  readonly max: number
  readonly windowMs: number
}

export interface PolicyState {
  readonly policy: RatePolicy
  /** Requests left in the window after this decision. */
  readonly remaining: number
  /** Milliseconds until more quota is available (the oldest counted request leaves the window); 0 with nothing counted. */
  readonly resetMs: number
  /** Milliseconds until a request would be allowed under this policy; 0 when one would be now. */
  readonly waitMs: number
}

export interface Decision {
  readonly allowed: boolean
  /**
   * The state the answer shows: when refused, the refusing policy with the longest wait (so its
   * wait is the exact Retry-After); else the policy with the fewest requests left.
   */
  readonly applied: PolicyState
}

/** Chooses the state an answer shows (see Decision.applied). */
export function appliedState(states: readonly PolicyState[], allowed: boolean): PolicyState {
  let applied = states[0] as PolicyState
  for (const state of states) {
    if (allowed ? state.remaining < applied.remaining : state.waitMs > applied.waitMs) applied = state
  }
  return applied
}

/** The counts of one partition (a key, a client IP) under one window length, in a ring of SLOTS + 1. */
interface Counts {
  readonly slots: Uint32Array
  /** The newest slot counted. */
  head: number
  total: number
}

const RING = SLOTS + 1

/** The slot a request at `now` (ms since the epoch) falls in. */
const slotAt = (now: number, windowMs: number) => Math.floor((now * SLOTS) / windowMs)

/** Counts one request in the newest slot. */
function count(counts: Counts) {
  const index = counts.head % RING
  counts.slots[index] = (counts.slots[index] as number) + 1
  counts.total++
}

/** When slot `slot` stops being counted, in ms since the epoch. */
const slotLeavesAt = (slot: number, windowMs: number) => ((slot + SLOTS + 1) * windowMs) / SLOTS

/**
 * Counters in this process's memory, bounded: the least recently used partitions beyond
 * `maxPartitions` are forgotten (a forgotten partition starts afresh).
 */
export function createMemoryWindows(maxPartitions = 100_000) {
  // By window length, then partition: no key string is built per decision.
  const byWindow = new Map<number, LRUCache<string, Counts>>()

  function countsOf(windowMs: number, partition: string, slot: number): Counts {
    let windows = byWindow.get(windowMs)
    if (windows === undefined) {
      windows = new LRUCache<string, Counts>({ max: maxPartitions })
      byWindow.set(windowMs, windows)
    }
    let counts = windows.get(partition)
    if (counts === undefined) {
      counts = { slots: new Uint32Array(RING), head: slot, total: 0 }
      windows.set(partition, counts)
      return counts
    }
    if (slot > counts.head) {
      // Slots that leave the counted range are the ring entries the new slots reuse.
      const steps = Math.min(slot - counts.head, RING)
      for (let i = 1; i <= steps; i++) {
        const index = (counts.head + i) % RING
        counts.total -= counts.slots[index] as number
        counts.slots[index] = 0
      }
      counts.head = slot
    }
    return counts
  }

  function stateOf(policy: RatePolicy, counts: Counts, now: number): PolicyState {
    const { max, windowMs } = policy
    const remaining = Math.max(0, max - counts.total)
    if (counts.total === 0) return { policy, remaining, resetMs: 0, waitMs: 0 }
    // From the oldest counted slot on: when does the first count leave, and when enough of them
    // that one more request fits?
    const mustLeave = counts.total - max + 1
    let left = 0
    let resetMs = -1
    let waitMs = mustLeave <= 0 ? 0 : -1
    for (let slot = counts.head - SLOTS; slot <= counts.head; slot++) {
      const count = counts.slots[((slot % RING) + RING) % RING] as number
      if (count === 0) continue
      const at = Math.max(0, Math.ceil(slotLeavesAt(slot, windowMs) - now))
      if (resetMs < 0) resetMs = at
      left += count
      if (waitMs < 0 && left >= mustLeave) {
        waitMs = at
        break
      }
    }
    return { policy, remaining, resetMs: Math.max(0, resetMs), waitMs: Math.max(0, waitMs) }
  }

  return {
    /**
     * Decides a request of `partition` under every policy at once: allowed only if every policy
     * allows it, and then counted by each. With `increment: false`, only looks.
     */
    decide(partition: string, policies: readonly RatePolicy[], increment: boolean, now = Date.now()): Decision {
      // One policy (the default, and most keys): no list is built.
      if (policies.length === 1) {
        const policy = policies[0] as RatePolicy
        const counts = countsOf(policy.windowMs, partition, slotAt(now, policy.windowMs))
        const allowed = counts.total < policy.max
        if (allowed && increment) count(counts)
        return { allowed, applied: stateOf(policy, counts, now) }
      }
      const all = policies.map((policy) => countsOf(policy.windowMs, partition, slotAt(now, policy.windowMs)))
      const allowed = policies.every((policy, i) => (all[i] as Counts).total < policy.max)
      if (allowed && increment) for (const counts of all) count(counts)
      const states = policies.map((policy, i) => stateOf(policy, all[i] as Counts, now))
      return { allowed, applied: appliedState(states, allowed) }
    },
  }
}

export type MemoryWindows = ReturnType<typeof createMemoryWindows>

/**
 * The same algorithm as a Redis script, atomic across every instance: one hash per policy
 * (field: slot, value: count), the clock is Redis's own (TIME), so instances whose clocks differ
 * still count in the same slots.
 *
 * One call decides `n` requests of one partition that arrived together, in order, exactly as `n`
 * calls one after the other would: the first k are allowed (k is the room every policy has left,
 * at most n) and counted, the others refused; a look (increment 0) allows all n or none and
 * counts nothing. `redisDecision` turns the answer into each request's decision.
 *
 * KEYS[i]: the hash of policy i. ARGV: increment (1 or 0), SLOTS, n, then max and windowMs of each
 * policy. Returns k, then for each policy: its count before the call, and resetMs and waitMs once
 * the k allowed requests are counted.
 */
export const SLIDING_WINDOW_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local increment = ARGV[1] == '1'
local slots = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local windows = {}
local room = n
for i, key in ipairs(KEYS) do
  local max = tonumber(ARGV[2 + 2 * i])
  local windowMs = tonumber(ARGV[3 + 2 * i])
  local head = math.floor(now * slots / windowMs)
  local raw = redis.call('HGETALL', key)
  local counts = {}
  local total = 0
  local stale = {}
  for j = 1, #raw, 2 do
    local slot = tonumber(raw[j])
    if slot < head - slots then
      stale[#stale + 1] = raw[j]
    else
      counts[slot] = tonumber(raw[j + 1])
      total = total + counts[slot]
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  room = math.min(room, max - total)
  windows[i] = { key = key, max = max, windowMs = windowMs, head = head, counts = counts, total = total }
end
local allowed = math.max(0, room)
if not increment and allowed > 0 then allowed = n end
local result = { allowed }
for i, w in ipairs(windows) do
  local before = w.total
  if increment and allowed > 0 then
    w.counts[w.head] = (w.counts[w.head] or 0) + allowed
    w.total = w.total + allowed
    redis.call('HINCRBY', w.key, string.format('%d', w.head), allowed)
    redis.call('PEXPIRE', w.key, w.windowMs * 2)
  end
  local resetMs = -1
  local mustLeave = w.total - w.max + 1
  local waitMs = -1
  if mustLeave <= 0 then waitMs = 0 end
  local left = 0
  if w.total > 0 then
    for slot = w.head - slots, w.head do
      local count = w.counts[slot]
      if count and count > 0 then
        local at = math.max(0, math.ceil((slot + slots + 1) * w.windowMs / slots - now))
        if resetMs < 0 then resetMs = at end
        left = left + count
        if waitMs < 0 and left >= mustLeave then
          waitMs = at
          break
        end
      end
    end
  end
  result[#result + 1] = before
  result[#result + 1] = math.max(0, resetMs)
  result[#result + 1] = math.max(0, waitMs)
end
return result
`

/**
 * The decision of request `index` (0-based) of the `n` one script call decided (see
 * SLIDING_WINDOW_SCRIPT): what the same requests decided one by one would each have been told.
 */
export function redisDecision(
  reply: readonly (number | string)[],
  policies: readonly RatePolicy[],
  increment: boolean,
  index: number,
): Decision {
  const allowedCount = Number(reply[0])
  const allowed = index < allowedCount
  // Counted before this request's own state was taken: itself and those before it when allowed,
  // every allowed one when refused (a refused request is not counted).
  const counted = increment ? (allowed ? index + 1 : allowedCount) : 0
  const states = policies.map((policy, i): PolicyState => {
    const remaining = Math.max(0, policy.max - Number(reply[1 + 3 * i]) - counted)
    const waitMs = Number(reply[3 + 3 * i])
    return {
      policy,
      remaining,
      resetMs: Number(reply[2 + 3 * i]),
      // An allowed request with room left can be followed at once; the last one allowed waits
      // what the call's state says, and so do the refused.
      waitMs: allowed && remaining > 0 ? 0 : waitMs,
    }
  })
  return { allowed, applied: appliedState(states, allowed) }
}
