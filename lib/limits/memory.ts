// memoryLimitStore(): the connection limit store of one process, the default.
// It keeps the store model of store.ts exactly, deadlines included, so that it
// behaves as the Redis store does: several apps in one process may share it,
// and an app that stops refreshing (closed without releasing, or stuck) loses
// its leases after the ttl. Its clock is the process's monotonic clock; its
// work is synchronous, so every call settles at once.
import { FST_WS_GATE_LIMIT_STORE_CLOSED } from '../errors.js'
import type { AcquireResult, LimitStore } from './store.js'

/** The options of memoryLimitStore(). */
export interface MemoryLimitStoreOptions {
  /**
   * The store's clock, in milliseconds; `performance.now()` by default. Only
   * differences matter. Tests give a fake one to expire leases without waiting.
   */
  now?: () => number
}

// The leases holding one key, each with its deadline. `earliest` is never
// later than the earliest deadline (a refresh leaves it early), so that
// expired leases are looked for only when one may have expired.
interface Holders {
  leases: Map<string, number>
  earliest: number
}

const OK: AcquireResult = Object.freeze({ ok: true })

/** An in-process connection limit store: the counts of one process. */
export function memoryLimitStore (options: MemoryLimitStoreOptions = {}): LimitStore {
  const now = options.now ?? (() => performance.now())
  const keys = new Map<string, Holders>()
  let closed = false

  // How many leases other than `lease` hold `key` at `time`, once the
  // expired ones are dropped.
  function held (key: string, lease: string, time: number): number {
    const holders = keys.get(key)
    if (holders === undefined) return 0
    if (holders.earliest <= time) {
      let earliest = Infinity
      for (const [other, deadline] of holders.leases) {
        if (deadline <= time) holders.leases.delete(other)
        else if (deadline < earliest) earliest = deadline
      }
      holders.earliest = earliest
      if (holders.leases.size === 0) keys.delete(key)
    }
    return holders.leases.size - (holders.leases.has(lease) ? 1 : 0)
  }

  function hold (key: string, lease: string, deadline: number): void {
    const holders = keys.get(key)
    if (holders === undefined) {
      keys.set(key, { leases: new Map([[lease, deadline]]), earliest: deadline })
      return
    }
    holders.leases.set(lease, deadline)
    if (deadline < holders.earliest) holders.earliest = deadline
  }

  function check (): void {
    if (closed) throw new FST_WS_GATE_LIMIT_STORE_CLOSED()
  }

  return {
    async acquire (limits, lease, ttl) {
      check()
      const time = now()
      for (const { key, max } of limits) {
        if (held(key, lease, time) >= max) return { ok: false, key }
      }
      for (const { key } of limits) hold(key, lease, time + ttl)
      return OK
    },

    async release (lease, released) {
      check()
      for (const key of released) {
        const holders = keys.get(key)
        if (holders !== undefined && holders.leases.delete(lease) && holders.leases.size === 0) keys.delete(key)
      }
    },

    async refresh (leases, ttl) {
      check()
      const deadline = now() + ttl
      for (const [lease, held] of leases) {
        for (const key of held) hold(key, lease, deadline)
      }
    },

    async close () {
      closed = true
      keys.clear()
    }
  }
}
