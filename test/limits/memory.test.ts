// memoryLimitStore(): the store contract, then its clock, driven by hand.
import t from 'tap'
import { memoryLimitStore } from '../../lib/limits/memory.js'
import { storeContract } from './contract.js'

t.test('the store contract', async (t) => {
  storeContract(t, async () => memoryLimitStore())
})

t.test('a lease counts until its deadline, exclusive, on the store clock; each refresh moves the deadline', async (t) => {
  let now = 1000
  const store = memoryLimitStore({ now: () => now })
  t.strictSame(await store.acquire([{ key: 'k', max: 1 }], 'l1', 100), { ok: true })
  now = 1099
  t.strictSame(await store.acquire([{ key: 'k', max: 1 }], 'l2', 100), { ok: false, key: 'k' })
  await store.refresh(new Map([['l1', ['k']]]), 100) // deadline 1199
  now = 1100
  t.strictSame(await store.acquire([{ key: 'k', max: 1 }], 'l2', 100), { ok: false, key: 'k' })
  now = 1199
  t.strictSame(await store.acquire([{ key: 'k', max: 1 }], 'l2', 100), { ok: true }, 'l1 expired at its deadline')
  t.strictSame(await store.acquire([{ key: 'k', max: 1 }], 'l1', 100), { ok: false, key: 'k' })
})

t.test('expired leases are dropped from every key, only those, and a key no lease holds goes away', async (t) => {
  let now = 0
  const store = memoryLimitStore({ now: () => now })
  t.strictSame(await store.acquire([{ key: 'k', max: 3 }], 'early', 10), { ok: true })
  now = 5
  t.strictSame(await store.acquire([{ key: 'k', max: 3 }], 'late', 10), { ok: true }) // deadline 15
  t.strictSame(await store.acquire([{ key: 'k', max: 3 }, { key: 'j', max: 1 }], 'both', 100), { ok: true })
  now = 12
  // early is gone, late and both still hold k: one place.
  t.strictSame(await store.acquire([{ key: 'k', max: 3 }], 'x', 1), { ok: true })
  t.strictSame(await store.acquire([{ key: 'k', max: 3 }], 'y', 1), { ok: false, key: 'k' })
  now = 200
  // Everything expired: k and j hold nothing, and a lease takes both anew.
  t.strictSame(await store.acquire([{ key: 'k', max: 1 }, { key: 'j', max: 1 }], 'z', 10), { ok: true })
  t.strictSame(await store.acquire([{ key: 'j', max: 1 }], 'w', 10), { ok: false, key: 'j' })
})
