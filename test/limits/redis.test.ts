// redisLimitStore() against a real redis-server, started by this file
// (test/limits/redis-server.ts), and ioredis clients: the store contract,
// then what only Redis shows (its keys and clock, the cap under concurrency
// from two clients, crashes, a Redis stopped, paused, restarted empty, a node
// cut off) and the keeper (lib/limits/leases.ts) on top of it.
import { once } from 'node:events'
import { Redis, type Cluster, type RedisOptions } from 'ioredis'
import t, { type Test } from 'tap'
import { LeaseKeeper } from '../../lib/limits/leases.js'
import { redisLimitStore, type RedisLimitClient } from '../../lib/limits/redis.js'
import type { LimitStore } from '../../lib/limits/store.js'
import { eventually, storeContract } from './contract.js'
import { startRedis, type RedisServer } from './redis-server.js'

// ioredis's clients are RedisLimitClients as they are: this would not compile otherwise.
const asClient = (client: Redis | Cluster): RedisLimitClient => client

const UNAVAILABLE = { code: 'FST_WS_GATE_LIMIT_STORE_UNAVAILABLE', statusCode: 503 }

// A client that retries every 50 ms and, like ioredis's defaults but more so,
// keeps every command in its offline queue for as long as Redis is away.
async function connect (t: Test, server: RedisServer, options: RedisOptions = {}): Promise<Redis> {
  const client = new Redis(server.port, '127.0.0.1', { retryStrategy: () => 50, maxRetriesPerRequest: null, ...options })
  client.on('error', () => {})
  t.teardown(() => { client.disconnect() })
  await once(client, 'ready')
  return client
}

// Resolves once the client is connected again (after a restart).
async function ready (client: Redis): Promise<void> {
  if (client.status !== 'ready') await once(client, 'ready')
}

// The same client without its `status`: the store can no longer tell it is
// disconnected, and only its own timeout bounds the calls.
function narrow (client: Redis): RedisLimitClient {
  return { evalsha: client.evalsha.bind(client), eval: client.eval.bind(client) }
}

// Resolves with what the promise settled to, or rejects if it did not
// settle within `ms`: "decided within the bound", not a timing figure.
async function settles<T> (promise: Promise<T>, ms: number): Promise<PromiseSettledResult<T>> {
  let timer: NodeJS.Timeout | undefined
  const bound = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([Promise.allSettled([promise]).then(([result]) => result), bound])
  } finally {
    clearTimeout(timer)
  }
}

function reason (result: PromiseSettledResult<unknown>): unknown {
  return result.status === 'rejected' ? result.reason : result.value
}

async function calls (admin: Redis, command: string): Promise<number> {
  const stats = await admin.info('commandstats')
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0)
}

t.test('redisLimitStore', async (t) => {
  const server = await startRedis(t)
  const admin = await connect(t, server)
  let prefixes = 0

  t.test('the store contract', async (t) => {
    storeContract(t, async (t) => redisLimitStore({ client: await connect(t, server), prefix: `contract-${prefixes++}` }))
  })

  t.test('checks its options', async (t) => {
    const client = narrow(admin)
    const invalid = (option: string) => ({ code: 'FST_WS_GATE_INVALID_OPTION', message: new RegExp(`option ${option} of redisLimitStore\\(\\)`) })
    t.throws(() => redisLimitStore(undefined as never), invalid('client'))
    t.throws(() => redisLimitStore({ client: {} as never }), invalid('client'))
    t.throws(() => redisLimitStore({ client: { evalsha: client.evalsha } as never }), invalid('client'))
    for (const prefix of ['', 'a{b', 'b}', 5]) {
      t.throws(() => redisLimitStore({ client, prefix: prefix as string }), invalid('prefix'), String(prefix))
    }
    for (const timeout of [0, 1.5, -1, 2 ** 31, '100', Infinity]) {
      t.throws(() => redisLimitStore({ client, timeout: timeout as number }), invalid('timeout'), String(timeout))
    }
    t.ok(redisLimitStore({ client: asClient(admin), prefix: 'p', timeout: 2 ** 31 - 1 }))
  })

  t.test('one sorted set per key, named {prefix}:key, a member per lease scored with its deadline on Redis\'s clock; the key expires with its last lease', async (t) => {
    const store = redisLimitStore({ client: await connect(t, server) })
    t.strictSame(await store.acquire([{ key: 'user:1', max: 5 }, { key: 'ip:{x}', max: 5 }], 'node:1', 5000), { ok: true })
    const [seconds, micros] = await admin.time()
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
    for (const key of ['{fastify-ws-gate}:user:1', '{fastify-ws-gate}:ip:{x}']) {
      t.equal(await admin.type(key), 'zset')
      t.strictSame(await admin.zrange(key, 0, -1), ['node:1'])
      const deadline = Number(await admin.zscore(key, 'node:1'))
      t.ok(deadline > now && deadline <= now + 5000, `${key}: the deadline is within the ttl of Redis's TIME`)
      t.equal(await admin.pexpiretime(key), deadline, `${key}: the key expires at its latest deadline`)
    }
    const other = redisLimitStore({ client: await connect(t, server), prefix: 'app' })
    t.strictSame(await other.acquire([{ key: 'user:1', max: 1 }], 'node:2', 5000), { ok: true }, 'another prefix, other counts')
    t.strictSame(await admin.zrange('{app}:user:1', 0, -1), ['node:2'])
    // A key refreshed by a lease with a shorter ttl keeps the later expiry.
    await other.refresh(new Map([['node:3', ['user:1']]]), 60_000)
    await other.refresh(new Map([['node:2', ['user:1']]]), 1000)
    t.equal(await admin.pexpiretime('{app}:user:1'), Number(await admin.zscore('{app}:user:1', 'node:3')))
  })

  t.test('the cap is exact under 500 concurrent acquires from two clients, and all of a route\'s limits are taken or none', async (t) => {
    const stores = [
      redisLimitStore({ client: await connect(t, server), prefix: 'cap' }),
      redisLimitStore({ client: await connect(t, server), prefix: 'cap' })
    ]
    // Ten users with 3 places each, all behind one address with 20.
    const results = await Promise.all(Array.from({ length: 500 }, (_, i) =>
      stores[i % 2].acquire([{ key: `user:${i % 10}`, max: 3 }, { key: 'ip:1', max: 20 }], `lease:${i}`, 60_000)))
    const admitted = results.filter((result) => result.ok).length
    t.equal(admitted, 20)
    t.equal(await admin.zcard('{cap}:ip:1'), 20)
    let held = 0
    for (let user = 0; user < 10; user++) {
      const count = await admin.zcard(`{cap}:user:${user}`)
      t.ok(count <= 3, `user ${user} holds ${count}`)
      held += count
    }
    t.equal(held, 20, 'no refused acquire took a user\'s place')
    t.ok(results.every((result) => result.ok || /^(user:\d|ip:1)$/.test(result.key)), 'a refusal names a full key')
  })

  t.test('a release on one node admits the next on the other', async (t) => {
    const [a, b] = [redisLimitStore({ client: await connect(t, server), prefix: 'handover' }), redisLimitStore({ client: await connect(t, server), prefix: 'handover' })]
    t.strictSame(await a.acquire([{ key: 'user:1', max: 1 }], 'a:1', 60_000), { ok: true })
    t.strictSame(await b.acquire([{ key: 'user:1', max: 1 }], 'b:1', 60_000), { ok: false, key: 'user:1' })
    await a.release('a:1', ['user:1'])
    t.strictSame(await b.acquire([{ key: 'user:1', max: 1 }], 'b:1', 60_000), { ok: true })
  })

  t.test('the leases of a node that stops refreshing (it crashed) expire after the ttl', async (t) => {
    const crashed = redisLimitStore({ client: await connect(t, server), prefix: 'crash' })
    const live = redisLimitStore({ client: await connect(t, server), prefix: 'crash' })
    t.strictSame(await crashed.acquire([{ key: 'user:1', max: 2 }], 'crashed:1', 300), { ok: true })
    t.strictSame(await crashed.acquire([{ key: 'user:1', max: 2 }], 'crashed:2', 300), { ok: true })
    t.strictSame(await live.acquire([{ key: 'user:1', max: 2 }], 'live:1', 60_000), { ok: false, key: 'user:1' })
    // Each crashed lease frees its place at its own deadline (a retried
    // acquire of a lease that got in does not count it twice).
    t.not(await eventually(async () =>
      (await live.acquire([{ key: 'user:1', max: 2 }], 'live:1', 60_000)).ok &&
      (await live.acquire([{ key: 'user:1', max: 2 }], 'live:2', 60_000)).ok), 0)
    t.strictSame(await admin.zrange('{crash}:user:1', 0, -1), ['live:1', 'live:2'])
  })

  t.test('a refresh is pipelined in calls of at most 500 keys, a lease\'s keys in one call', async (t) => {
    const client = await connect(t, server)
    const store = redisLimitStore({ client, prefix: 'chunks' })
    const leases = new Map<string, string[]>()
    for (let i = 0; i < 300; i++) leases.set(`l:${i}`, [`user:${i}`, 'all'])
    leases.set('none', [])
    leases.set('wide', Array.from({ length: 600 }, (_, i) => `wide:${i}`))
    const before = await calls(admin, 'evalsha')
    await store.refresh(leases, 60_000)
    t.equal(await calls(admin, 'evalsha') - before, 3, '600 keys in two calls, then one lease of 600')
    t.equal(await admin.zcard('{chunks}:all'), 300)
    t.strictSame(await admin.zrange('{chunks}:user:299', 0, -1), ['l:299'])
    t.strictSame(await admin.zrange('{chunks}:wide:599', 0, -1), ['wide'])
  })

  t.test('Redis\'s errors reject with the coded error, the client\'s as its cause, and take nothing', async (t) => {
    const store = redisLimitStore({ client: await connect(t, server), prefix: 'errors' })
    await admin.set('{errors}:string', 'x')
    const result = await settles(store.acquire([{ key: 'free', max: 1 }, { key: 'string', max: 1 }], 'l:1', 60_000), 5000)
    t.equal(result.status, 'rejected')
    t.match(reason(result), { ...UNAVAILABLE, message: /acquire: ReplyError: .*WRONGTYPE/, cause: { name: 'ReplyError' } })
    t.equal(await admin.exists('{errors}:free'), 0)
  })

  t.test('Redis stopped: every call rejects with the coded error within the timeout, whatever the client queues', async (t) => {
    const client = await connect(t, server)
    const store = redisLimitStore({ client, prefix: 'stopped', timeout: 300 })
    // The same client without its status: its commands wait in its offline queue.
    const blind = redisLimitStore({ client: narrow(client), prefix: 'stopped', timeout: 300 })
    t.strictSame(await store.acquire([{ key: 'user:1', max: 1 }], 'kept', 60_000), { ok: true })
    await server.stop()
    t.teardown(() => server.start())
    const calls: Array<Promise<unknown>> = [
      store.acquire([{ key: 'user:1', max: 1 }], 'l:1', 60_000),
      blind.acquire([{ key: 'user:1', max: 1 }], 'l:2', 60_000),
      store.release('kept', ['user:1']),
      blind.release('kept', ['user:1']),
      store.refresh(new Map([['kept', ['user:1']]]), 60_000),
      blind.refresh(new Map([['kept', ['user:1']]]), 60_000)
    ]
    for (const result of await Promise.all(calls.map((call) => settles(call, 300 + 1000)))) {
      t.equal(result.status, 'rejected')
      t.match(reason(result), UNAVAILABLE)
    }
    t.match(reason(await settles(blind.acquire([{ key: 'user:1', max: 1 }], 'l:3', 60_000), 1300)), { message: /Redis did not answer within 300 ms/ })
    // The default bound: a handshake is decided within a second.
    const byDefault = redisLimitStore({ client: narrow(client), prefix: 'stopped' })
    t.match(reason(await settles(byDefault.acquire([{ key: 'user:1', max: 1 }], 'l:6', 60_000), 1000 + 1000)), { ...UNAVAILABLE, message: /Redis did not answer within 1000 ms/ })
    t.match(reason(await settles(store.acquire([{ key: 'user:1', max: 1 }], 'l:4', 60_000), 1300)), UNAVAILABLE)
    client.disconnect()
    t.match(reason(await settles(store.acquire([{ key: 'user:1', max: 1 }], 'l:5', 60_000), 1300)), { message: 'The connection limit store is unavailable: acquire: the Redis client is end' })
  })

  t.test('an acquire that timed out (Redis paused) is taken back: it ran when Redis woke, then its release', async (t) => {
    const client = await connect(t, server)
    const store = redisLimitStore({ client, prefix: 'paused', timeout: 200 })
    const [zadds, zrems] = [await calls(admin, 'zadd'), await calls(admin, 'zrem')]
    server.pause()
    t.teardown(() => { server.resume() })
    const result = await settles(store.acquire([{ key: 'user:1', max: 1 }], 'late', 60_000), 1200)
    t.match(reason(result), { ...UNAVAILABLE, message: /acquire: Redis did not answer within 200 ms/ })
    server.resume()
    t.not(await eventually(async () => await calls(admin, 'zrem') > zrems), 0)
    t.equal(await calls(admin, 'zadd'), zadds + 1, 'the acquire ran')
    t.equal(await admin.exists('{paused}:user:1'), 0, 'and was taken back')
    t.strictSame(await store.acquire([{ key: 'user:1', max: 1 }], 'next', 60_000), { ok: true })
  })

  t.test('Redis restarted empty: the keeper\'s refresh puts its leases back (scripts loaded again), and the cap holds again', async (t) => {
    const lost: string[] = []
    const clients = [await connect(t, server), await connect(t, server)]
    const keeper = new LeaseKeeper({ store: redisLimitStore({ client: clients[0], prefix: 'restart' }), leaseTtl: 60_000, onLost: (lease) => lost.push(lease) })
    t.teardown(() => keeper.close())
    const other = redisLimitStore({ client: clients[1], prefix: 'restart' })
    const limits = [{ key: 'user:1', max: 2 }]
    t.match(await keeper.acquire(limits), { ok: true })
    t.match(await keeper.acquire(limits), { ok: true })
    await server.stop()
    await server.start()
    await Promise.all([admin, ...clients].map(ready))
    t.equal(await admin.exists('{restart}:user:1'), 0, 'Redis is empty')
    t.strictSame(await other.acquire(limits, 'other:1', 60_000), { ok: true }, 'and admits before the refresh')
    await other.release('other:1', ['user:1'])
    await keeper.refresh()
    t.equal(await admin.zcard('{restart}:user:1'), 2)
    t.strictSame(await other.acquire(limits, 'other:2', 60_000), { ok: false, key: 'user:1' })
    t.strictSame(lost, [])
  })

  t.test('under onStoreError: \'allow\', a connection admitted while Redis is down is counted once it is back', async (t) => {
    const errors: unknown[] = []
    const keeper = new LeaseKeeper({ store: redisLimitStore({ client: await connect(t, server), prefix: 'allow', timeout: 300 }), leaseTtl: 60_000, onStoreError: 'allow', onError: (err) => errors.push(err) })
    t.teardown(() => keeper.close())
    await server.stop()
    const admission = await settles(keeper.acquire([{ key: 'user:1', max: 1 }]), 1300)
    t.match(reason(admission), { ok: true, lease: String, error: UNAVAILABLE })
    await keeper.refresh()
    t.match(errors, [UNAVAILABLE])
    await server.start()
    t.not(await eventually(async () => {
      await keeper.refresh()
      return await admin.zcard('{allow}:user:1') === 1
    }), 0)
    t.equal(keeper.size, 1)
  })

  t.test('a node cut off from Redis reports its leases lost before they expire, and the other node then takes their places', async (t) => {
    const events: string[] = []
    const cut = await connect(t, server)
    const a = new LeaseKeeper({ store: redisLimitStore({ client: cut, prefix: 'cut' }), leaseTtl: 1500, onLost: (lease) => events.push(`lost ${lease}`), node: 'a' })
    const b = new LeaseKeeper({ store: redisLimitStore({ client: await connect(t, server), prefix: 'cut' }), leaseTtl: 1500, node: 'b' })
    t.teardown(() => Promise.all([a.close(), b.close()]))
    const limits = [{ key: 'user:1', max: 2 }]
    t.strictSame(await a.acquire(limits), { ok: true, lease: 'a:0' })
    t.strictSame(await a.acquire(limits), { ok: true, lease: 'a:1' })
    t.strictSame(await b.acquire(limits), { ok: false, key: 'user:1' })
    cut.disconnect()
    t.not(await eventually(async () => {
      const admission = await b.acquire(limits)
      if (admission.ok) events.push(`admitted ${admission.lease}`)
      return admission.ok
    }, 200), 0)
    t.strictSame(events.slice(0, 2).sort(), ['lost a:0', 'lost a:1'])
    t.match(events[2], /^admitted b:/)
    t.equal(a.size, 0)
  })

  t.test('the keeper refreshes by itself every leaseTtl/3', async (t) => {
    const keeper = new LeaseKeeper({ store: redisLimitStore({ client: await connect(t, server), prefix: 'timer' }), leaseTtl: 600 })
    t.teardown(() => keeper.close())
    t.match(await keeper.acquire([{ key: 'user:1', max: 1 }]), { ok: true })
    const deadline = async (): Promise<number> => Number((await admin.zrange('{timer}:user:1', 0, -1, 'WITHSCORES'))[1])
    const start = await deadline()
    t.not(await eventually(async () => await deadline() > start), 0)
    await keeper.close()
    t.equal(await admin.exists('{timer}:user:1'), 0, 'close() released it')
  })

  t.test('after close(), the client stays open', async (t) => {
    const client = await connect(t, server)
    const store: LimitStore = redisLimitStore({ client })
    await store.close()
    t.equal(await client.ping(), 'PONG')
  })
})
