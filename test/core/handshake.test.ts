// The core's handshake state machine alone: no server, no socket, no
// Fastify. Its owner here is a fake that records what it is asked to do, as a
// wire and its face would be.
import { Readable } from 'node:stream'
import t from 'tap'
import { accept, reject } from '../../lib/core/decision.js'
import type { Denial } from '../../lib/core/denial.js'
import { Handshake, HandshakeRegistry, type HandshakeOwner, type HandshakeState } from '../../lib/core/handshake.js'
import type { HeaderPairs } from '../../lib/core/headers.js'
import type { Refusal } from '../../lib/core/refusal.js'

// What the owner was asked to send, as one value, so that tests compare it whole.
type Answer =
  | { kind: 'accept', protocol: string | undefined, headers: HeaderPairs }
  | { kind: 'deny', denial: Denial }
  | { kind: 'refuse', refusal: Refusal }

type Call =
  | ['settled', HandshakeState, number | undefined]
  | ['answer', Answer]
  | ['fail', unknown]
  | ['watch']
  | ['cut']

interface Fake extends HandshakeOwner {
  calls: Call[]
  logs: Array<[string, string, object]>
}

function owner (options: { answerThrows?: Error } = {}): Fake {
  const calls: Call[] = []
  const logs: Array<[string, string, object]> = []
  const log = (level: string) => (obj: object, msg: string) => { logs.push([level, msg, obj]) }
  const answer = (answer: Answer): void => {
    calls.push(['answer', answer])
    if (options.answerThrows !== undefined) throw options.answerThrows
  }
  return {
    calls,
    logs,
    log: { debug: log('debug'), warn: log('warn'), error: log('error') },
    settled (state, status) { calls.push(['settled', state, status]) },
    accept (protocol, headers) { answer({ kind: 'accept', protocol, headers: headers as HeaderPairs }) },
    limits () { return undefined },
    deny (denial) { answer({ kind: 'deny', denial }) },
    refuse (refusal) { answer({ kind: 'refuse', refusal }) },
    fail (err) { calls.push(['fail', err]) },
    watch () { calls.push(['watch']) },
    cut () { calls.push(['cut']) }
  }
}

const LIMITS = { maxBodySize: 1024, timeout: 1000 }

function handshake (fake: Fake, options: { protocols?: string[], timeout?: number, closeFrame?: boolean, registry?: HandshakeRegistry } = {}): Handshake {
  return new Handshake(options.protocols ?? [], fake, { timeout: options.timeout ?? 0, limits: LIMITS, registry: options.registry ?? new HandshakeRegistry() }, options.closeFrame ?? false)
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

t.test('an accept settles, then answers with the chosen subprotocol and validated headers', async (t) => {
  const fake = owner()
  const h = handshake(fake, { protocols: ['a', 'b'] })
  h.decide(accept({ protocol: 'b', headers: { 'Set-Cookie': ['x=1', 'y=2'] } }))
  t.strictSame(fake.calls, [
    ['settled', 'accepted', 101],
    ['answer', { kind: 'accept', protocol: 'b', headers: [['Set-Cookie', 'x=1'], ['Set-Cookie', 'y=2']] }]
  ])
  t.equal(h.pending, false)
})

t.test('a reject answers with a denial: status, headers, body and its type', async (t) => {
  const fake = owner()
  handshake(fake).decide(reject(401, 'Bad token', { headers: { 'WWW-Authenticate': 'Bearer' } }))
  const [[, state, status], [, answer]] = fake.calls as [['settled', HandshakeState, number], ['answer', Answer]]
  t.strictSame([state, status], ['denied', 401])
  t.equal(answer.kind, 'deny')
  if (answer.kind !== 'deny') return
  t.strictSame(answer.denial.headers, [['WWW-Authenticate', 'Bearer'], ['Content-Type', 'application/json; charset=utf-8']])
  t.equal(String(answer.denial.body), '{"statusCode":401,"error":"Unauthorized","message":"Bad token"}')
  t.strictSame(fake.logs, [['debug', 'handshake rejected', { statusCode: 401 }]])
})

t.test('with closeFrame, a reject answers with a refusal: 4000 + status, the reason, the first offered subprotocol', async (t) => {
  const fake = owner()
  handshake(fake, { closeFrame: true, protocols: ['chat'] }).decide(reject(429, 'later', { headers: { 'Retry-After': '5', 'X-Id': '7' } }))
  t.strictSame(fake.calls, [
    ['settled', 'refused', 429],
    ['answer', { kind: 'refuse', refusal: { status: 429, protocol: 'chat', headers: [['X-Id', '7']], code: 4429, reason: 'later' } }]
  ])
})

t.test('invalid decisions answer 500 and log the error once; nothing of them is answered', async (t) => {
  for (const [decision, code] of [
    [{ not: 'a decision' }, 'FST_WS_GATE_INVALID_DECISION'],
    [accept({ protocol: 'nope' }), 'FST_WS_GATE_PROTOCOL_NOT_OFFERED'],
    [reject(700), 'FST_WS_GATE_INVALID_STATUS'],
    [accept({ headers: { 'X-Bad': 'a\nb' } }), 'FST_WS_GATE_INVALID_HEADER']
  ] as const) {
    const fake = owner()
    handshake(fake).decide(decision)
    t.strictSame(fake.calls.map((call) => call[0]), ['settled', 'answer'], code)
    t.strictSame(fake.calls[0], ['settled', 'failed', 500])
    const answer = (fake.calls[1] as ['answer', Answer])[1]
    t.ok(answer.kind === 'deny' && answer.denial.status === 500 && String(answer.denial.body) === '{"statusCode":500,"error":"Internal Server Error","message":"Internal Server Error"}')
    t.strictSame(fake.logs.map(([level, msg, obj]) => [level, msg, (obj as { err: { code: string } }).err.code]), [['error', 'invalid handshake decision', code]])
  }
})

t.test('a promise already settled is applied without watching; one still pending after a microtask is watched', async (t) => {
  const quick = owner()
  handshake(quick).decide(Promise.resolve(accept()))
  await tick()
  t.strictSame(quick.calls.map((call) => call[0]), ['settled', 'answer'])

  const slow = owner()
  let decide: (decision: unknown) => void = () => {}
  const h = handshake(slow)
  h.decide(new Promise((resolve) => { decide = resolve }))
  await tick()
  t.strictSame(slow.calls, [['watch']])
  decide(reject())
  await tick()
  t.strictSame(slow.calls.map((call) => call[0]), ['watch', 'settled', 'answer'])
})

t.test('the deadline answers 503 with Retry-After, aborts the signal, and a late decision is dropped (its stream destroyed)', async (t) => {
  const fake = owner()
  let abandoned: Error | undefined
  let decide: (decision: unknown) => void = () => {}
  const h = handshake(fake, { timeout: 20 })
  h.onAbandoned = (reason) => { abandoned = reason }
  const signal = h.context().signal
  h.decide(new Promise((resolve) => { decide = resolve }))
  await new Promise((resolve) => setTimeout(resolve, 60))
  t.strictSame(fake.calls.slice(0, 2), [['watch'], ['settled', 'timed-out', 503]])
  const answer = (fake.calls[2] as ['answer', Answer])[1]
  t.ok(answer.kind === 'deny' && answer.denial.status === 503)
  if (answer.kind === 'deny') t.strictSame(answer.denial.headers, [['Content-Type', 'application/json; charset=utf-8'], ['Retry-After', '5']])
  t.equal(signal.aborted, true)
  t.equal((signal.reason as { code: string }).code, 'FST_WS_GATE_HANDSHAKE_TIMEOUT')
  t.equal(abandoned, signal.reason)
  const body = new Readable({ read () {} })
  decide(reject(401, undefined, { body }))
  await tick()
  t.equal(body.destroyed, true)
  t.equal(fake.calls.length, 3, 'nothing more answered')
  t.ok(fake.logs.some(([level, msg]) => level === 'debug' && msg === 'late handshake decision dropped'))
})

t.test('a client that leaves: gone, the signal aborts with FST_WS_GATE_CLIENT_CLOSED, nothing is answered', async (t) => {
  const fake = owner()
  const h = handshake(fake)
  h.decide(new Promise(() => {}))
  await tick()
  h.gone()
  t.strictSame(fake.calls, [['watch'], ['settled', 'gone', undefined]])
  t.equal((h.signal.reason as { code: string }).code, 'FST_WS_GATE_CLIENT_CLOSED', 'a signal first read afterwards is already aborted')
  t.strictSame(fake.logs.at(-1), ['debug', 'client closed the connection during the handshake', {}])
})

t.test('shutdown answers every pending handshake 503, newest first, each once', async (t) => {
  const registry = new HandshakeRegistry()
  const fakes = [owner(), owner(), owner()]
  const handshakes = fakes.map((fake) => handshake(fake, { registry }))
  handshakes[1].decide(accept())
  const order: number[] = []
  fakes.forEach((fake, i) => { const settled = fake.settled; fake.settled = (state, status) => { order.push(i); settled(state, status) } })
  registry.shutdown()
  t.strictSame(order, [2, 0])
  t.strictSame(fakes[0].calls[0], ['settled', 'shut-down', 503])
  t.equal(registry.first, undefined)
  registry.shutdown()
  t.equal(fakes[0].calls.length, 2, 'answered once')
})

t.test('a handler that throws or rejects fails once; a failure after the handshake settled is only logged', async (t) => {
  const fake = owner()
  const h = handshake(fake)
  const err = new Error('upstream down')
  h.decide(Promise.reject(err))
  await tick()
  t.strictSame(fake.calls.filter((call) => call[0] !== 'watch'), [['settled', 'failed', undefined], ['fail', err]])
  h.fail(new Error('again'))
  t.strictSame(fake.logs.at(-1)?.slice(0, 2), ['debug', 'handshake handler failed after the handshake was settled'])

  const thenable = owner()
  handshake(thenable).decide({ then () { throw new Error('broken then') } })
  t.equal(thenable.calls[1]?.[0], 'fail')
})

t.test('an answer that fails after it started (a listener threw during the 101): logged, and the connection cut', async (t) => {
  const fake = owner({ answerThrows: new Error('listener threw') })
  handshake(fake).decide(accept())
  t.strictSame(fake.calls.map((call) => call[0]), ['settled', 'answer', 'cut'])
  t.strictSame(fake.logs.map(([level, msg]) => [level, msg]), [['error', 'handshake failed after its answer was written']])
})

t.test('respond(): a denial a face framed itself, checked against the limits, or its refusal under closeFrame', async (t) => {
  const over = owner()
  t.throws(() => { handshake(over).respond({ status: 401, headers: [], body: null, length: 2048 }) }, { code: 'FST_WS_GATE_INVALID_BODY' })
  t.strictSame(over.calls, [], 'nothing settled or answered')
  const fine = owner()
  handshake(fine).respond({ status: 204, headers: [], body: null, length: 2048 })
  t.strictSame(fine.calls[0], ['settled', 'denied', 204], 'a 204 carries no body, whatever its length says')
  const refused = owner()
  handshake(refused, { closeFrame: true }).respond({ status: 403, headers: [['Content-Length', '3']], body: null })
  t.strictSame(refused.calls[1], ['answer', { kind: 'refuse', refusal: { status: 403, protocol: undefined, headers: [], code: 4403, reason: '' } }])
})
