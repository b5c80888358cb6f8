// Connection limits across a fleet: Fastify nodes in separate processes
// (test/fixtures/fleet-node.mjs, the built package) sharing one real Redis
// started by the test. A user's cap holds exactly across nodes; a crashed
// node's places come back after leaseTtl; Redis down, restarted, or out of a
// node's reach.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t from 'tap'
import WebSocket from 'ws'
import { startRedis } from './limits/redis-server.js'

const NODE = join(__dirname, 'fixtures', 'fleet-node.mjs')
const LEASE_TTL = 1500

interface FleetNode { port: number, child: ChildProcess }

async function node (t: { teardown (fn: () => unknown): void }, redisUrl: string, env: Record<string, string> = {}): Promise<FleetNode> {
  const child = spawn(process.execPath, [NODE], { env: { ...process.env, REDIS_URL: redisUrl, LEASE_TTL: String(LEASE_TTL), ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const [line] = await once(createInterface({ input: child.stdout as NodeJS.ReadableStream }), 'line') as [string]
  return { port: (JSON.parse(line) as { port: number }).port, child }
}

type Outcome = { open: true, ws: WebSocket } | { open: false, status: number, retryAfter: string | undefined }

function connect (port: number, user: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { 'x-user': user } })
    ws.once('open', () => { resolve({ open: true, ws }) })
    ws.once('unexpected-response', (_req, res) => {
      res.resume()
      resolve({ open: false, status: res.statusCode as number, retryAfter: res.headers['retry-after'] as string | undefined })
    })
    ws.once('error', reject)
  })
}

async function leases (port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/leases`)
  return ((await res.json()) as { leases: number }).leases
}

const opened = (outcomes: Outcome[]): WebSocket[] => outcomes.flatMap((outcome) => outcome.open ? [outcome.ws] : [])

t.test('500 concurrent handshakes for one user over two nodes: exactly max open, the rest 429; a close on one node admits the next on the other', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await Promise.all([node(t, redis.url), node(t, redis.url)])
  const outcomes = await Promise.all(Array.from({ length: 500 }, (_, i) => connect(i % 2 === 0 ? a.port : b.port, 'ann')))
  const open = opened(outcomes)
  t.equal(open.length, 5)
  t.same([...new Set(outcomes.flatMap((outcome) => outcome.open ? [] : [`${outcome.status} ${outcome.retryAfter}`]))], ['429 5'])
  t.equal((await leases(a.port)) + (await leases(b.port)), 5)
  // Close one of them, on whichever node it is; the next opens on the other node.
  const index = outcomes.findIndex((outcome) => outcome.open)
  const [from, to] = index % 2 === 0 ? [a, b] : [b, a]
  const before = await leases(from.port)
  ;(outcomes[index] as { ws: WebSocket }).ws.close()
  let released = false
  for (let i = 0; i < 100 && !released; i++) {
    released = (await leases(from.port)) === before - 1
    if (!released) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.ok(released, 'the closed connection released its lease on its node')
  const next = await connect(to.port, 'ann')
  t.equal(next.open, true, 'the place freed on one node is taken on the other')
  const again = await connect(from.port, 'ann')
  t.same(again, { open: false, status: 429, retryAfter: '5' }, 'and the cap holds again')
  for (const ws of [...open, (next as { ws: WebSocket }).ws]) ws.close()
})

t.test('kill -9 of a node frees its places after leaseTtl, not before', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await Promise.all([node(t, redis.url, { MAX: '2' }), node(t, redis.url, { MAX: '2' })])
  const held = opened(await Promise.all([connect(a.port, 'bo'), connect(a.port, 'bo')]))
  t.equal(held.length, 2)
  a.child.kill('SIGKILL')
  await once(a.child, 'exit')
  const killedAt = Date.now()
  const refused = await connect(b.port, 'bo')
  t.equal(refused.open, false, 'right after the crash the dead node\'s leases still count')
  let admitted: Outcome | undefined
  for (let i = 0; i < 100 && (admitted === undefined || !admitted.open); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    admitted = await connect(b.port, 'bo')
  }
  t.equal(admitted?.open, true, 'once they expired, the other node admits')
  t.ok(Date.now() - killedAt >= LEASE_TTL - 200, 'not before leaseTtl (less the refresh already in flight)')
  ;(admitted as { ws: WebSocket }).ws.close()
})

t.test('Redis down: onStoreError deny answers 503 with Retry-After, allow admits; Redis back, empty: the limits hold again', async (t) => {
  const redis = await startRedis(t)
  const [deny, allow] = await Promise.all([node(t, redis.url, { MAX: '1' }), node(t, redis.url, { MAX: '1', ON_STORE_ERROR: 'allow' })])
  const first = await connect(allow.port, 'cy')
  t.equal(first.open, true)
  await redis.stop()
  const started = Date.now()
  const refused = await connect(deny.port, 'dee')
  t.same(refused, { open: false, status: 503, retryAfter: '5' })
  t.ok(Date.now() - started < 2000, 'decided within the store\'s one-second bound (plus the connection)')
  const admitted = await connect(allow.port, 'cy')
  t.equal(admitted.open, true, 'allow admits while the store is down, over the cap')
  ;(admitted as { ws: WebSocket }).ws.close()
  await redis.start()
  // The allow node's refresh puts its open connection back; then the cap holds.
  let over: Outcome | undefined
  for (let i = 0; i < 100; i++) {
    over = await connect(deny.port, 'cy')
    if (!over.open && over.status === 429) break
    if (over.open) over.ws.close()
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.same(over, { open: false, status: 429, retryAfter: '5' })
  ;(first as { ws: WebSocket }).ws.close()
})

t.test('a node cut off from Redis for longer than leaseTtl closes the connections it can no longer prove, with 1013', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis.url, { MAX: '3' })
  const held = opened([await connect(a.port, 'eve')])
  t.equal(held.length, 1)
  const closed = once(held[0], 'close')
  redis.pause()
  t.teardown(() => { redis.resume() })
  const [code, reason] = await closed as [number, Buffer]
  t.equal(code, 1013)
  t.equal(String(reason), 'Connection limit could not be confirmed')
  t.equal(await leases(a.port), 0)
})
