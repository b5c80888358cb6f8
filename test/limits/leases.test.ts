// LeaseKeeper on the in-process store, through a store that fails on demand
// (faulty.ts), on a fake time (clock.ts): lease names, admissions, the
// refresh every leaseTtl/3, leases lost when the store can no longer prove
// them, onStoreError, close(). The last tests run on the process's clock.
import t, { type Test } from 'tap'
import { LeaseKeeper, type LeaseKeeperOptions } from '../../lib/limits/leases.js'
import { memoryLimitStore } from '../../lib/limits/memory.js'
import type { LimitStore } from '../../lib/limits/store.js'
import { FakeTime, settle } from './clock.js'
import { eventually } from './contract.js'
import { faulty, type Faulty } from './faulty.js'

const TTL = 300 // refreshed every 100, a proof lasts 285
const UNAVAILABLE = { code: 'FST_WS_GATE_LIMIT_STORE_UNAVAILABLE' }
const CLOSED = { code: 'FST_WS_GATE_LIMIT_STORE_CLOSED', statusCode: 503 }
const LIMITS = [{ key: 'user:1', max: 2 }, { key: 'ip:1', max: 5 }]

interface Setup {
  time: FakeTime
  store: Faulty
  keeper: LeaseKeeper
  lost: string[]
  errors: unknown[]
}

function setup (t: Test, options: Partial<LeaseKeeperOptions> = {}): Setup {
  const time = new FakeTime()
  const memory = memoryLimitStore({ now: () => time.now })
  const store = faulty(() => memory)
  const lost: string[] = []
  const errors: unknown[] = []
  const keeper = new LeaseKeeper({ store, leaseTtl: TTL, node: 'n', clock: time.clock(), onLost: (lease) => lost.push(lease), onError: (err) => errors.push(err), ...options })
  t.teardown(() => keeper.close())
  return { time, store, keeper, lost, errors }
}

const methods = (store: Faulty): string[] => store.calls.map(([method]) => method)

t.test('checks its options', async (t) => {
  const store = memoryLimitStore()
  for (const leaseTtl of [2, 1.5, '300', 2 ** 31, Infinity]) {
    t.throws(() => new LeaseKeeper({ store, leaseTtl: leaseTtl as number }), { code: 'FST_WS_GATE_INVALID_OPTION', message: /connectionLimits\.leaseTtl/ }, String(leaseTtl))
  }
  t.throws(() => new LeaseKeeper({ store, leaseTtl: 300, onStoreError: 'log' as 'deny' }), { code: 'FST_WS_GATE_INVALID_OPTION', message: /connectionLimits\.onStoreError/ })
  const keeper = new LeaseKeeper({ store, leaseTtl: 3 })
  t.match(keeper.node, /^[\w-]{12}$/, 'a random node id by default')
  t.not(new LeaseKeeper({ store, leaseTtl: 3 }).node, keeper.node)
  await keeper.close()
})

t.test('leases are the node id and a counter; each admission holds one, a refusal none; no limits holds nothing', async (t) => {
  const { store, keeper } = setup(t)
  t.strictSame(await keeper.acquire(LIMITS), { ok: true, lease: 'n:0' })
  t.strictSame(await keeper.acquire(LIMITS), { ok: true, lease: 'n:1' })
  t.strictSame(await keeper.acquire(LIMITS), { ok: false, key: 'user:1' })
  t.equal(keeper.size, 2)
  t.strictSame(store.calls[0], ['acquire', LIMITS, 'n:0', TTL])
  t.strictSame(await keeper.acquire([]), { ok: true, lease: 'n:3' })
  t.equal(keeper.size, 2)
  t.equal(store.calls.length, 3, 'no limits: the store is not asked')
  await keeper.release('n:3')
  t.equal(store.calls.length, 3)
})

t.test('a release frees the lease in the store; releasing it again, or a lease never held, does nothing', async (t) => {
  const { store, keeper } = setup(t)
  await keeper.acquire(LIMITS)
  await keeper.acquire(LIMITS)
  await keeper.release('n:0')
  t.strictSame(store.calls.at(-1), ['release', 'n:0', ['user:1', 'ip:1']])
  await keeper.release('n:0')
  await keeper.release('other:0')
  t.strictSame(methods(store), ['acquire', 'acquire', 'release'])
  t.equal(keeper.size, 1)
  t.strictSame(await keeper.acquire(LIMITS), { ok: true, lease: 'n:2' })
})

t.test('a release that fails goes to onError, and the lease is dropped all the same', async (t) => {
  const { store, keeper, errors } = setup(t)
  await keeper.acquire(LIMITS)
  store.link = 'down'
  await keeper.release('n:0')
  t.equal(keeper.size, 0)
  t.match(errors, [UNAVAILABLE])
})

t.test('every leaseTtl/3, all leases held are refreshed in one call; none is made with no lease', async (t) => {
  const { time, store, keeper } = setup(t)
  await time.advance(100)
  t.strictSame(methods(store), [])
  await keeper.acquire(LIMITS)
  await keeper.acquire([{ key: 'user:2', max: 1 }])
  await time.advance(99)
  t.strictSame(methods(store), ['acquire', 'acquire'])
  await time.advance(1)
  t.strictSame(store.calls.at(-1), ['refresh', new Map([['n:0', ['user:1', 'ip:1']], ['n:1', ['user:2']]]), TTL])
  await time.advance(TTL * 10)
  t.equal(methods(store).filter((method) => method === 'refresh').length, 31)
})

t.test('under deny, a store failure rejects acquire() with the store\'s error, and nothing is held', async (t) => {
  const { store, keeper } = setup(t)
  store.link = 'down'
  await t.rejects(keeper.acquire(LIMITS), UNAVAILABLE)
  store.link = 'lossy'
  await t.rejects(keeper.acquire(LIMITS), UNAVAILABLE)
  t.equal(keeper.size, 0)
})

t.test('a lease not proved for leaseTtl less 5% is lost: dropped, released, and reported, before the store can expire it', async (t) => {
  const { time, store, keeper, lost, errors } = setup(t)
  await time.advance(10)
  t.match(await keeper.acquire(LIMITS), { lease: 'n:0' }) // proved at 10
  store.link = 'down'
  await time.advance(284)
  t.strictSame(lost, [])
  t.equal(keeper.size, 1)
  await time.advance(1)
  t.strictSame(lost, ['n:0'])
  t.equal(keeper.size, 0)
  t.strictSame(store.calls.at(-1), ['release', 'n:0', ['user:1', 'ip:1']])
  t.equal(errors.length, 3, 'two refreshes and the release failed')
  // The store counts it until its deadline, 310: the node gave it up first.
  store.link = 'up'
  t.strictSame(await keeper.acquire([{ key: 'user:1', max: 1 }]), { ok: false, key: 'user:1' })
  await time.advance(14)
  t.strictSame(await keeper.acquire([{ key: 'user:1', max: 1 }]), { ok: false, key: 'user:1' })
  await time.advance(1)
  t.strictSame(await keeper.acquire([{ key: 'user:1', max: 1 }]), { ok: true, lease: 'n:3' })
})

t.test('without onLost, a lost lease is dropped all the same', async (t) => {
  const { time, store, keeper } = setup(t, { onLost: undefined })
  await keeper.acquire(LIMITS)
  store.link = 'down'
  await time.advance(285)
  t.equal(keeper.size, 0)
})

t.test('each refresh that succeeds proves the leases it carried from when it was sent', async (t) => {
  const { time, store, keeper, lost } = setup(t)
  await keeper.acquire(LIMITS) // proved at 0
  await time.advance(150) // refreshed at 100
  store.link = 'down'
  await time.advance(234) // to 384
  t.strictSame(lost, [])
  await time.advance(1)
  t.strictSame(lost, ['n:0'])
})

t.test('leases proved at different times are lost each at its own time', async (t) => {
  const { time, store, keeper, lost } = setup(t)
  await keeper.acquire(LIMITS) // proved at 0
  store.link = 'down'
  await time.advance(50)
  store.link = 'up'
  await keeper.acquire([{ key: 'user:2', max: 1 }]) // proved at 50
  store.link = 'down'
  await time.advance(235) // to 285
  t.strictSame(lost, ['n:0'])
  await time.advance(49)
  t.strictSame(lost, ['n:0'])
  await time.advance(1)
  t.strictSame(lost, ['n:0', 'n:1'])
  await time.advance(TTL * 3)
  t.strictSame(lost, ['n:0', 'n:1'])
})

t.test('a refresh sent earlier but answered later does not move a proof back', async (t) => {
  const time = new FakeTime()
  const memory = memoryLimitStore({ now: () => time.now })
  const answers: Array<() => void> = []
  let refreshes = true
  const store: LimitStore = {
    ...memory,
    async refresh (leases, ttl) {
      if (!refreshes) throw new Error('down')
      await new Promise<void>((resolve) => answers.push(resolve))
      await memory.refresh(leases, ttl)
    }
  }
  const lost: string[] = []
  const keeper = new LeaseKeeper({ store, leaseTtl: TTL, clock: time.clock(), onLost: (lease) => lost.push(lease) })
  t.teardown(() => keeper.close())
  await keeper.acquire(LIMITS)
  await time.advance(100) // the tick's refresh, sent at 100
  await time.advance(50)
  const second = keeper.refresh() // sent at 150
  answers[1]()
  await second
  answers[0]()
  await settle()
  refreshes = false
  await time.advance(284) // to 434
  t.strictSame(lost, [])
  await time.advance(1)
  t.equal(lost.length, 1)
})

t.test('an onLost that throws goes to onError; the other leases are reported all the same', async (t) => {
  const lost: string[] = []
  const { time, store, keeper, errors } = setup(t, {
    onLost: (lease) => {
      lost.push(lease)
      throw new Error(`cannot close ${lease}`)
    }
  })
  await keeper.acquire(LIMITS)
  await keeper.acquire(LIMITS)
  store.link = 'down'
  await time.advance(285)
  t.strictSame(lost, ['n:0', 'n:1'])
  t.match((errors as Error[]).filter((err) => err.message.startsWith('cannot')), [{ message: 'cannot close n:0' }, { message: 'cannot close n:1' }])
})

t.test('under allow, a store failure admits, with the error, and no lease is ever lost; refreshes count it once the store is back', async (t) => {
  const { time, store, keeper, lost, errors } = setup(t, { onStoreError: 'allow' })
  store.link = 'down'
  const admission = await keeper.acquire([{ key: 'user:1', max: 1 }])
  t.match(admission, { ok: true, lease: 'n:0', error: UNAVAILABLE })
  t.equal(keeper.size, 1)
  await time.advance(TTL * 10)
  t.strictSame(lost, [])
  t.equal(errors.length, 30)
  store.link = 'up'
  t.strictSame(await keeper.acquire([{ key: 'user:1', max: 1 }]), { ok: true, lease: 'n:1' }, 'the store did not count it yet')
  await keeper.release('n:1')
  await time.advance(100)
  t.strictSame(await keeper.acquire([{ key: 'user:1', max: 1 }]), { ok: false, key: 'user:1' }, 'the refresh counted it')
})

t.test('close() stops the timers and releases every lease; later acquires reject; so does one pending, whose lease is released', async (t) => {
  const { time, store, keeper } = setup(t)
  await keeper.acquire(LIMITS)
  await keeper.acquire([{ key: 'user:2', max: 1 }])
  store.link = 'hold'
  const pending = keeper.acquire([{ key: 'user:3', max: 1 }])
  await settle()
  store.link = 'up'
  const closing = keeper.close()
  store.flush()
  await closing
  await t.rejects(pending, CLOSED)
  await settle()
  t.strictSame(store.calls.filter(([method]) => method === 'release').map(([, lease]) => lease).sort(), ['n:0', 'n:1', 'n:2'])
  t.equal(keeper.size, 0)
  t.equal(time.pending, 0, 'no timer left')
  await keeper.close()
  await t.rejects(keeper.acquire(LIMITS), CLOSED)
})

t.test('under allow, an acquire that fails after close() rejects with the store\'s error', async (t) => {
  const { store, keeper } = setup(t, { onStoreError: 'allow' })
  store.link = 'hold'
  const pending = keeper.acquire(LIMITS)
  await settle()
  await keeper.close()
  store.link = 'down'
  store.flush()
  await t.rejects(pending, UNAVAILABLE)
  t.equal(keeper.size, 0)
})

t.test('on the process\'s clock: refreshes come by themselves, and an unproved lease is lost', async (t) => {
  const store = faulty(() => memory)
  const memory = memoryLimitStore()
  const lost: string[] = []
  const keeper = new LeaseKeeper({ store, leaseTtl: 30, onLost: (lease) => lost.push(lease) })
  t.teardown(() => keeper.close())
  await keeper.acquire(LIMITS)
  t.not(await eventually(async () => methods(store).includes('refresh')), 0)
  store.link = 'down'
  t.not(await eventually(async () => lost.length === 1), 0)
  await keeper.close()
})
