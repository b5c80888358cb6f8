// Property test (fast-check) of the keeper (lib/limits/leases.ts) and the
// in-process store (lib/limits/memory.ts), as a fleet: three nodes, each a
// LeaseKeeper on its own clock over one shared store, through a link that may
// be up, down (calls fail unapplied) or lossy (calls are applied, and fail),
// on a fake time (clock.ts, faulty.ts). Whatever the interleaving of opens,
// closes, crashes, restarts, link changes and time passing:
// - safety: after every step, the connections open on live nodes that hold a
//   key never outnumber its max (a crashed node's connections died with it;
//   a node's connection is closed when its lease is reported lost). And,
//   what makes it so, at every instant (after each step and each timer),
//   each of those connections has a lease the store has not expired;
// - liveness: once the links are up and every lease of the dead and the lost
//   has expired, the store counts exactly the open connections: a newcomer
//   gets every other place.
// The store never loses what it was told here (a Redis restarted empty is
// test/limits/redis.test.ts's), and every node denies on a store failure
// (under 'allow', exceeding a max while the store is out of reach is the
// point).
import fc from 'fast-check'
import t from 'tap'
import { LeaseKeeper } from '../../lib/limits/leases.js'
import { memoryLimitStore } from '../../lib/limits/memory.js'
import type { LimitRequest, LimitStore } from '../../lib/limits/store.js'
import { FakeTime, settle } from './clock.js'
import { faulty, type Faulty, type Link } from './faulty.js'

const RUNS = 300
const TTL = 300
const KEYS = ['a', 'b', 'c']
const NODES = 3

type Step =
  | { op: 'open', node: number, keys: number[] }
  | { op: 'close', node: number, pick: number }
  | { op: 'crash', node: number }
  | { op: 'restart', node: number }
  | { op: 'link', node: number, link: Link }
  | { op: 'advance', ms: number }

const node = fc.nat(NODES - 1)
// Time passes by a little, a lot, or just what takes a lease to a boundary:
// a refresh (TTL/3), its loss (TTL less 5%), its expiry (TTL).
const elapse = fc.oneof(
  fc.integer({ min: 1, max: 20 }),
  fc.integer({ min: 1, max: TTL * 1.5 }),
  fc.constantFrom(TTL / 3, TTL - TTL / 20, TTL, TTL / 20)
)
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('open' as const), node, keys: fc.subarray([0, 1, 2], { minLength: 1 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('close' as const), node, pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('crash' as const), node }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('restart' as const), node }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('link' as const), node, link: fc.constantFrom<Link>('up', 'down', 'lossy') }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('advance' as const), ms: elapse }) }
)

interface Node {
  keeper: LeaseKeeper
  store: Faulty
  kill: () => void
  dead: boolean
  /** Its open connections: lease → keys. */
  open: Map<string, string[]>
}

// What the runs did, to check that they exercise every path.
const stats = { admitted: 0, refused: 0, failed: 0, lost: 0 }

async function fleet (maxes: number[], steps: Step[]): Promise<void> {
  const time = new FakeTime()
  const memory = memoryLimitStore({ now: () => time.now })
  // The deadline the store gave each lease on each key, from the calls it
  // applied: the oracle for "proved".
  const deadlines = new Map<string, number>()
  const recorded: LimitStore = {
    async acquire (limits, lease, ttl) {
      const result = await memory.acquire(limits, lease, ttl)
      if (result.ok) for (const { key } of limits) deadlines.set(`${lease} ${key}`, time.now + ttl)
      return result
    },
    async release (lease, keys) {
      await memory.release(lease, keys)
      for (const key of keys) deadlines.delete(`${lease} ${key}`)
    },
    async refresh (leases, ttl) {
      await memory.refresh(leases, ttl)
      for (const [lease, keys] of leases) for (const key of keys) deadlines.set(`${lease} ${key}`, time.now + ttl)
    },
    close: () => memory.close()
  }
  let boots = 0
  const boot = (): Node => {
    const clock = time.clock()
    const open = new Map<string, string[]>()
    const store = faulty(() => recorded)
    const keeper = new LeaseKeeper({
      store,
      leaseTtl: TTL,
      clock,
      node: `n${boots++}`,
      onLost: (lease) => {
        stats.lost++
        open.delete(lease)
      }
    })
    return { keeper, store, kill: clock.kill, dead: false, open }
  }
  const nodes = Array.from({ length: NODES }, boot)
  const opened = (key: string): number => {
    let count = 0
    for (const { dead, open } of nodes) {
      if (dead) continue
      for (const keys of open.values()) if (keys.includes(key)) count++
    }
    return count
  }
  // Every connection open on a live node holds a lease the store still
  // counts, at every instant: checked after each step and each timer.
  const proved = (when: string): void => {
    for (const { dead, open } of nodes) {
      if (dead) continue
      for (const [lease, keys] of open) {
        for (const key of keys) {
          const deadline = deadlines.get(`${lease} ${key}`) ?? -Infinity
          if (deadline <= time.now) throw new Error(`${when}, at ${time.now}: ${lease} is open, but its place on ${key} expired at ${deadline}`)
        }
      }
    }
  }
  for (const [index, step] of steps.entries()) {
    const node = step.op === 'advance' ? undefined : nodes[step.node]
    switch (step.op) {
      case 'open': {
        if (node!.dead) break
        const limits: LimitRequest[] = step.keys.map((k) => ({ key: KEYS[k], max: maxes[k] }))
        const admission = await node!.keeper.acquire(limits).catch(() => undefined)
        if (admission?.ok === true) node!.open.set(admission.lease, limits.map(({ key }) => key))
        stats[admission === undefined ? 'failed' : admission.ok ? 'admitted' : 'refused']++
        break
      }
      case 'close': {
        const leases = [...node!.open.keys()]
        if (node!.dead || leases.length === 0) break
        const lease = leases[step.pick % leases.length]
        node!.open.delete(lease)
        await node!.keeper.release(lease)
        break
      }
      case 'crash':
        // The process dies: its connections with it, its leases stay in the store.
        node!.kill()
        node!.dead = true
        node!.open.clear()
        break
      case 'restart':
        if (node!.dead) nodes[step.node] = boot()
        break
      case 'link':
        node!.store.link = step.link
        break
      case 'advance':
        await time.advance(step.ms, () => { proved(`during step ${index}`) })
        break
    }
    await settle()
    proved(`after step ${index} (${JSON.stringify(step)})`)
    for (const [k, key] of KEYS.entries()) {
      const count = opened(key)
      if (count > maxes[k]) throw new Error(`after step ${index} (${JSON.stringify(step)}), ${count} connections hold ${key}, over its max ${maxes[k]}`)
    }
  }

  // Links up; every lease of the dead, the lost and the lossy expires.
  for (const node of nodes) node.store.link = 'up'
  await time.advance(TTL * 2)
  for (const [k, key] of KEYS.entries()) {
    let admitted = 0
    for (let i = 0; i <= maxes[k]; i++) {
      if ((await memory.acquire([{ key, max: maxes[k] }], `newcomer:${i}`, TTL)).ok) admitted++
    }
    const expected = maxes[k] - opened(key)
    if (admitted !== expected) throw new Error(`${key}: a newcomer got ${admitted} places, not ${expected} (max ${maxes[k]}, ${opened(key)} open)`)
  }
  for (const { keeper } of nodes) await keeper.close()
}

t.test('fleet-wide, the open connections per key never exceed its max, and the store ends up counting exactly them', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 3, maxLength: 3 }), fc.array(step, { minLength: 5, maxLength: 80, size: 'max' }), fleet),
    { numRuns: RUNS }
  )
  t.comment(JSON.stringify(stats))
  for (const [what, count] of Object.entries(stats)) t.ok(count > RUNS / 10, `${what}: ${count}`)
})
