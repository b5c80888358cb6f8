// What every LimitStore must do (lib/limits/store.ts), as tests any store
// can be run against: test/limits/memory.test.ts and redis.test.ts run them
// on the two stores of the package. Expiry is observed in real time, with
// short ttls and bounded waits.
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import type { LimitStore } from '../../lib/limits/store.js'

/** Makes a fresh store, whose keys no other test uses. */
export type MakeStore = (t: Test) => Promise<LimitStore>

const TTL = 60_000

/** Polls `check` every 20 ms, at most `tries` times; resolves with the number of tries it took, or 0. */
export async function eventually (check: () => Promise<boolean>, tries = 100): Promise<number> {
  for (let i = 1; i <= tries; i++) {
    if (await check()) return i
    await sleep(20)
  }
  return 0
}

export function storeContract (t: Test, make: MakeStore): void {
  t.test('takes all limits or none: a refusal takes nothing, and names the first full key in the order given', async (t) => {
    const store = await make(t)
    t.strictSame(await store.acquire([{ key: 'a', max: 1 }, { key: 'b', max: 2 }], 'l1', TTL), { ok: true })
    t.strictSame(await store.acquire([{ key: 'b', max: 2 }, { key: 'a', max: 1 }], 'l2', TTL), { ok: false, key: 'a' })
    // l2 did not take b: one place is still free there.
    t.strictSame(await store.acquire([{ key: 'b', max: 2 }], 'l3', TTL), { ok: true })
    t.strictSame(await store.acquire([{ key: 'b', max: 2 }], 'l4', TTL), { ok: false, key: 'b' })
    t.strictSame(await store.acquire([{ key: 'a', max: 1 }, { key: 'b', max: 2 }], 'l5', TTL), { ok: false, key: 'a' })
    t.strictSame(await store.acquire([{ key: 'c', max: 5 }, { key: 'b', max: 2 }, { key: 'a', max: 1 }], 'l6', TTL), { ok: false, key: 'b' })
    // Nor did l6 take c.
    t.strictSame(await store.acquire([{ key: 'c', max: 1 }], 'l7', TTL), { ok: true })
  })

  t.test('each acquire is judged by its own max; 0 refuses on an empty key; no limits is taken at once', async (t) => {
    const store = await make(t)
    t.strictSame(await store.acquire([{ key: 'k', max: 0 }], 'l1', TTL), { ok: false, key: 'k' })
    t.strictSame(await store.acquire([{ key: 'k', max: 1 }], 'l1', TTL), { ok: true })
    t.strictSame(await store.acquire([{ key: 'k', max: 1 }], 'l2', TTL), { ok: false, key: 'k' })
    t.strictSame(await store.acquire([{ key: 'k', max: 2 }], 'l2', TTL), { ok: true })
    t.strictSame(await store.acquire([], 'l3', TTL), { ok: true })
  })

  t.test('a lease that holds a key is not counted twice: a retried acquire succeeds', async (t) => {
    const store = await make(t)
    t.strictSame(await store.acquire([{ key: 'k', max: 1 }], 'l1', TTL), { ok: true })
    t.strictSame(await store.acquire([{ key: 'k', max: 1 }], 'l1', TTL), { ok: true })
    t.strictSame(await store.acquire([{ key: 'k', max: 1 }, { key: 'j', max: 1 }], 'l1', TTL), { ok: true })
    t.strictSame(await store.acquire([{ key: 'k', max: 1 }], 'l2', TTL), { ok: false, key: 'k' })
  })

  t.test('a release frees the places at once; releasing what is not held does nothing', async (t) => {
    const store = await make(t)
    t.strictSame(await store.acquire([{ key: 'a', max: 1 }, { key: 'b', max: 1 }], 'l1', TTL), { ok: true })
    await store.release('nobody', ['a', 'b', 'never'])
    t.strictSame(await store.acquire([{ key: 'a', max: 1 }], 'l2', TTL), { ok: false, key: 'a' })
    await store.release('l1', ['a', 'b'])
    await store.release('l1', ['a', 'b'])
    t.strictSame(await store.acquire([{ key: 'a', max: 1 }], 'l2', TTL), { ok: true })
    t.strictSame(await store.acquire([{ key: 'b', max: 1 }], 'l3', TTL), { ok: true })
    await store.release('l2', [])
    t.strictSame(await store.acquire([{ key: 'a', max: 1 }], 'l4', TTL), { ok: false, key: 'a' })
  })

  t.test('a refresh puts leases back whatever the count: new acquires wait until enough are released', async (t) => {
    const store = await make(t)
    t.strictSame(await store.acquire([{ key: 'k', max: 2 }], 'l1', TTL), { ok: true })
    t.strictSame(await store.acquire([{ key: 'k', max: 2 }], 'l2', TTL), { ok: true })
    // Two leases the store never saw (admitted while it was down), one of them on two keys.
    await store.refresh(new Map([['l3', ['k']], ['l4', ['k', 'j']], ['l5', []]]), TTL)
    t.strictSame(await store.acquire([{ key: 'j', max: 1 }], 'l6', TTL), { ok: false, key: 'j' })
    await store.release('l1', ['k'])
    await store.release('l2', ['k'])
    t.strictSame(await store.acquire([{ key: 'k', max: 2 }], 'l6', TTL), { ok: false, key: 'k' })
    await store.release('l3', ['k'])
    t.strictSame(await store.acquire([{ key: 'k', max: 2 }], 'l6', TTL), { ok: true })
    await store.refresh(new Map(), TTL)
  })

  t.test('a lease nobody refreshes expires after its ttl; one refreshed in time does not', async (t) => {
    const store = await make(t)
    t.strictSame(await store.acquire([{ key: 'gone', max: 1 }], 'crashed', 200), { ok: true })
    t.strictSame(await store.acquire([{ key: 'kept', max: 1 }], 'alive', 1000), { ok: true })
    t.strictSame(await store.acquire([{ key: 'gone', max: 1 }], 'next', 60_000), { ok: false, key: 'gone' })
    // The crashed lease's place frees within a bounded wait, while the live
    // one, refreshed every 100 ms with a ttl of 1 s, keeps its place.
    let kept = true
    const took = await eventually(async () => {
      await store.refresh(new Map([['alive', ['kept']]]), 1000)
      if ((await store.acquire([{ key: 'kept', max: 1 }], 'intruder', 1000)).ok) kept = false
      return (await store.acquire([{ key: 'gone', max: 1 }], 'next', 60_000)).ok
    }, 50)
    t.not(took, 0, 'the crashed lease expired')
    t.ok(kept, 'the refreshed lease never expired')
  })

  t.test('after close(), every call rejects with FST_WS_GATE_LIMIT_STORE_CLOSED', async (t) => {
    const store = await make(t)
    t.strictSame(await store.acquire([{ key: 'k', max: 1 }], 'l1', TTL), { ok: true })
    await store.close()
    const closed = { code: 'FST_WS_GATE_LIMIT_STORE_CLOSED', statusCode: 503 }
    await t.rejects(store.acquire([{ key: 'k', max: 1 }], 'l2', TTL), closed)
    await t.rejects(store.acquire([], 'l2', TTL), closed)
    await t.rejects(store.release('l1', ['k']), closed)
    await t.rejects(store.refresh(new Map([['l1', ['k']]]), TTL), closed)
    await store.close()
  })
}
