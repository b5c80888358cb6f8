// The core's admission step: an accept that must first take its route's
// connection limits (a LeaseKeeper over a real in-process store, or a store
// that fails), with a fake owner that records what it is asked to send.
import t from 'tap'
import { accept } from '../../lib/core/decision.js'
import type { Denial } from '../../lib/core/denial.js'
import { Handshake, HandshakeRegistry, type HandshakeOwner, type HandshakeState, type Limiter } from '../../lib/core/handshake.js'
import type { HeaderPairs } from '../../lib/core/headers.js'
import type { Refusal } from '../../lib/core/refusal.js'
import { FST_WS_GATE_LIMIT_STORE_UNAVAILABLE } from '../../lib/errors.js'
import { LeaseKeeper } from '../../lib/limits/leases.js'
import { memoryLimitStore } from '../../lib/limits/memory.js'
import type { LimitRequest, LimitStore } from '../../lib/limits/store.js'

type Call =
  | ['settled', HandshakeState, number | undefined]
  | ['accept', string | undefined, HeaderPairs | undefined, string | undefined]
  | ['deny', Denial]
  | ['refuse', Refusal]
  | ['watch']

interface Fake extends HandshakeOwner {
  calls: Call[]
  logs: string[]
}

function owner (limits: () => readonly LimitRequest[] | undefined): Fake {
  const calls: Call[] = []
  const logs: string[] = []
  return {
    calls,
    logs,
    log: { debug: (_obj, msg) => { logs.push(msg) }, warn: (_obj, msg) => { logs.push(msg) }, error: (_obj, msg) => { logs.push(msg) } },
    settled (state, status) { calls.push(['settled', state, status]) },
    accept (protocol, headers, lease) { calls.push(['accept', protocol, headers, lease]) },
    limits,
    deny (denial) { calls.push(['deny', denial]) },
    refuse (refusal) { calls.push(['refuse', refusal]) },
    fail () {},
    watch () { calls.push(['watch']) },
    cut () {}
  }
}

const LIMITS = { maxBodySize: 1024, timeout: 1000 }
const RETRY = [['Retry-After', '7']] as HeaderPairs

function limiter (t: { teardown (fn: () => unknown): void }, store: LimitStore = memoryLimitStore(), onStoreError: 'deny' | 'allow' = 'deny'): Limiter {
  const keeper = new LeaseKeeper({ store, leaseTtl: 60_000, onStoreError })
  t.teardown(() => keeper.close())
  return { keeper, retryAfter: RETRY }
}

function handshake (fake: Fake, limiterOf: Limiter | undefined, options: { closeFrame?: boolean, timeout?: number, registry?: HandshakeRegistry } = {}): Handshake {
  const settings = { timeout: options.timeout ?? 0, limits: LIMITS, registry: options.registry ?? new HandshakeRegistry(), ...(limiterOf !== undefined && { limiter: limiterOf }) }
  return new Handshake(['chat'], fake, settings, options.closeFrame ?? false)
}

const until = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5))
}

const ONE = (): LimitRequest[] => [{ key: 'user:1', max: 1 }]

t.test('an accept with room takes a lease, then goes out with it; the next one over the limit gets 429 with Retry-After', async (t) => {
  const shared = limiter(t)
  const first = owner(ONE)
  const engine = handshake(first, shared)
  engine.apply(accept({ protocol: 'chat', headers: { 'x-a': '1' } }))
  t.equal(engine.admitting, true)
  t.same(first.calls, [['watch']], 'it watches the client while the store counts')
  await until(() => first.calls.length > 1)
  const lease = (first.calls[2] as ['accept', string, HeaderPairs, string])[3]
  t.match(lease, /^[A-Za-z0-9_-]{12}:0$/)
  t.same(first.calls.slice(1), [['settled', 'accepted', 101], ['accept', 'chat', [['x-a', '1']], lease]])
  t.equal(shared.keeper.size, 1)

  const second = owner(ONE)
  handshake(second, shared).apply(accept())
  await until(() => second.calls.length > 1)
  t.same(second.calls[1], ['settled', 'limited', 429])
  const denial = (second.calls[2] as ['deny', Denial])[1]
  t.equal(denial.status, 429)
  t.same(denial.headers, [['Content-Type', 'application/json; charset=utf-8'], ['Retry-After', '7']])
  t.same(JSON.parse(String(denial.body)), { statusCode: 429, code: 'FST_WS_GATE_CONNECTION_LIMIT', error: 'Too Many Requests', message: 'Too many open connections; try again later' })
  t.ok(second.logs.includes('handshake refused: connection limit reached'))

  await shared.keeper.release(lease)
  const third = owner(ONE)
  handshake(third, shared).apply(accept())
  await until(() => third.calls.length > 1)
  t.same(third.calls[1], ['settled', 'accepted', 101], 'a released place admits the next')
})

t.test('rejectVia close-frame: over the limit is a completed handshake closed with 4429', async (t) => {
  const shared = limiter(t)
  const holder = owner(ONE)
  handshake(holder, shared).apply(accept())
  await until(() => holder.calls.length > 1)
  const refused = owner(ONE)
  const engine = handshake(refused, shared, { closeFrame: true })
  let abandoned: Error | undefined
  engine.onAbandoned = (reason) => { abandoned = reason }
  engine.apply(accept())
  await until(() => refused.calls.length > 1)
  t.same(refused.calls[1], ['settled', 'limited', 429])
  const refusal = (refused.calls[2] as ['refuse', Refusal])[1]
  t.equal(refusal.code, 4429)
  t.equal(refusal.protocol, 'chat')
  t.equal(abandoned?.message, 'Too many open connections; try again later')
})

t.test('a store that fails: 503 with Retry-After under deny; admitted and logged under allow', async (t) => {
  const broken: LimitStore = {
    acquire: async () => { throw new FST_WS_GATE_LIMIT_STORE_UNAVAILABLE('acquire: connection refused') },
    release: async () => {},
    refresh: async () => {},
    close: async () => {}
  }
  const denied = owner(ONE)
  const engine = handshake(denied, limiter(t, broken, 'deny'))
  let abandoned: Error | undefined
  engine.onAbandoned = (reason) => { abandoned = reason }
  engine.apply(accept())
  await until(() => denied.calls.length > 1)
  t.same(denied.calls[1], ['settled', 'unavailable', 503])
  const denial = (denied.calls[2] as ['deny', Denial])[1]
  t.equal(denial.status, 503)
  t.same(denial.headers.slice(1), [['Retry-After', '5']])
  t.equal(JSON.parse(String(denial.body)).code, 'FST_WS_GATE_LIMIT_STORE_UNAVAILABLE')
  t.equal(abandoned?.message, 'The connection limit store is unavailable: acquire: connection refused')
  t.ok(denied.logs.includes('handshake refused: the connection limit store is unavailable'))

  const allowed = owner(ONE)
  const admitted = handshake(allowed, limiter(t, broken, 'allow'))
  let told = 0
  admitted.onAdmitted = () => { told++ }
  admitted.apply(accept())
  await until(() => allowed.calls.length > 1)
  t.same(allowed.calls[1], ['settled', 'accepted', 101])
  t.equal(told, 1)
  t.ok(allowed.logs.includes('connection admitted while the connection limit store is unavailable (onStoreError: allow)'))
})

t.test('the client leaves, the deadline passes or the server shuts down while the store counts: the lease taken too late is released', async (t) => {
  let finish: (() => void) | undefined
  const store = memoryLimitStore()
  const slow: LimitStore = {
    acquire: (limits, lease, ttl) => new Promise((resolve) => { finish = () => { resolve(store.acquire(limits, lease, ttl)) } }),
    release: (lease, keys) => store.release(lease, keys),
    refresh: (leases, ttl) => store.refresh(leases, ttl),
    close: () => store.close()
  }
  const shared = limiter(t, slow)
  const fake = owner(ONE)
  const engine = handshake(fake, shared)
  engine.apply(accept())
  engine.gone()
  t.same(fake.calls, [['watch'], ['settled', 'gone', undefined]])
  engine.apply(accept())
  t.ok(fake.logs.includes('late handshake decision dropped'), 'a second decision while admitting is late')
  ;(finish as () => void)()
  await until(() => shared.keeper.size === 0 && fake.logs.length > 2)
  t.equal(shared.keeper.size, 0)
  t.same(fake.calls, [['watch'], ['settled', 'gone', undefined]], 'nothing more was sent')

  const registry = new HandshakeRegistry()
  const closing = owner(ONE)
  handshake(closing, shared, { registry }).apply(accept())
  registry.shutdown()
  t.same(closing.calls.slice(1, 2), [['settled', 'shut-down', 503]])
  ;(finish as () => void)()
  await until(() => false)
  t.equal(shared.keeper.size, 0)
})

t.test('limits() that throws is an invalid decision (500); no limits, or none left after skipping, accepts at once', async (t) => {
  const shared = limiter(t)
  const broken = owner(() => { throw new TypeError('no user on the request') })
  handshake(broken, shared).apply(accept())
  t.same(broken.calls[0], ['settled', 'failed', 500])
  t.equal((broken.calls[1] as ['deny', Denial])[1].status, 500)
  const none = owner(() => [])
  handshake(none, shared).apply(accept())
  t.same(none.calls, [['settled', 'accepted', 101], ['accept', undefined, [], undefined]])
  const skipped = owner(() => undefined)
  handshake(skipped, shared).apply(accept())
  t.same(skipped.calls, [['settled', 'accepted', 101], ['accept', undefined, [], undefined]])
  const unlimited = owner(ONE)
  handshake(unlimited, undefined).apply(accept())
  t.same(unlimited.calls, [['settled', 'accepted', 101], ['accept', undefined, [], undefined]], 'a route without a limiter never asks for limits')
})

t.test('acceptAsIs: a route without a decision of its own takes its limits, then leaves the subprotocol to ws', async (t) => {
  const shared = limiter(t)
  const fake = owner(ONE)
  handshake(fake, shared).acceptAsIs()
  await until(() => fake.calls.length > 1)
  const lease = (fake.calls[2] as ['accept', undefined, undefined, string])[3]
  t.same(fake.calls.slice(1), [['settled', 'accepted', 101], ['accept', undefined, undefined, lease]])
  const broken = owner(() => { throw new TypeError('bad key') })
  handshake(broken, shared).acceptAsIs()
  t.same(broken.calls[0], ['settled', 'failed', 500])
})

t.test('a store that fails after the client left: nothing more is sent', async (t) => {
  let fail: (() => void) | undefined
  const failing: LimitStore = {
    acquire: () => new Promise((_resolve, reject) => { fail = () => { reject(new FST_WS_GATE_LIMIT_STORE_UNAVAILABLE('acquire: timed out')) } }),
    release: async () => {},
    refresh: async () => {},
    close: async () => {}
  }
  const fake = owner(ONE)
  const engine = handshake(fake, limiter(t, failing))
  engine.apply(accept())
  engine.gone()
  ;(fail as () => void)()
  await until(() => false)
  t.same(fake.calls, [['watch'], ['settled', 'gone', undefined]])
  t.notOk(fake.logs.includes('handshake refused: the connection limit store is unavailable'))
})

t.test('an owner that finds the client gone as it starts watching: the limits are not counted at all', async (t) => {
  let asked = 0
  const counting: LimitStore = {
    acquire: async () => { asked++; return { ok: true } },
    release: async () => {},
    refresh: async () => {},
    close: async () => {}
  }
  const fake = owner(ONE)
  const engine = handshake(fake, limiter(t, counting))
  fake.watch = () => { fake.calls.push(['watch']); engine.gone() }
  engine.apply(accept())
  await until(() => false)
  t.equal(asked, 0)
  t.same(fake.calls, [['watch'], ['settled', 'gone', undefined]])
})
