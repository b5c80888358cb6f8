// A store between a node and the real one (the in-process store) that fails
// as a network would: 'up' passes calls on; 'down' rejects them, unapplied,
// as the Redis store does when Redis is out of reach; 'lossy' applies them and
// then rejects, as when the answer was lost (the worst case: the Redis store
// would also send a release, which may be lost too). 'hold' keeps calls
// pending until release() is called, then passes them on.
import { FST_WS_GATE_LIMIT_STORE_UNAVAILABLE } from '../../lib/errors.js'
import type { LimitStore } from '../../lib/limits/store.js'

export type Link = 'up' | 'down' | 'lossy' | 'hold'

export interface Faulty extends LimitStore {
  link: Link
  /** Every call made, by method name. */
  calls: Array<[method: string, ...args: unknown[]]>
  /** Lets the calls held so far go on (set `link` first). */
  flush (): void
}

export function faulty (target: () => LimitStore, link: Link = 'up'): Faulty {
  let held: Array<() => void> = []
  const through = async <T>(call: () => Promise<T>): Promise<T> => {
    if (store.link === 'hold') await new Promise<void>((resolve) => held.push(resolve))
    if (store.link === 'down') throw new FST_WS_GATE_LIMIT_STORE_UNAVAILABLE('down')
    const result = await call()
    if (store.link === 'lossy') throw new FST_WS_GATE_LIMIT_STORE_UNAVAILABLE('lost')
    return result
  }
  const store: Faulty = {
    link,
    calls: [],
    acquire (limits, lease, ttl) {
      store.calls.push(['acquire', limits, lease, ttl])
      return through(() => target().acquire(limits, lease, ttl))
    },
    release (lease, keys) {
      store.calls.push(['release', lease, keys])
      return through(() => target().release(lease, keys))
    },
    refresh (leases, ttl) {
      store.calls.push(['refresh', new Map(leases), ttl])
      return through(() => target().refresh(leases, ttl))
    },
    close () {
      return target().close()
    },
    flush () {
      const go = held
      held = []
      for (const resume of go) resume()
    }
  }
  return store
}
