// Contract point 7: a handler still pending after handshakeTimeout is answered
// 503 with Retry-After, its signal aborts, and a later decision is ignored.
import { Readable } from 'node:stream'
import t from 'tap'
import { accept, reject, type HandshakeDecision } from '../lib/index.js'
import { settings } from '../lib/core/options.js'
import { parseRaw, rawExchange, stableHead, start, upgradeRequest, wait } from './helpers.js'

function timeoutBody (ms: number): string {
  return JSON.stringify({
    statusCode: 503,
    code: 'FST_WS_GATE_HANDSHAKE_TIMEOUT',
    error: 'Service Unavailable',
    message: `The handshake was not decided within ${ms} ms`
  })
}

t.test('a pending handler times out: 503 with Retry-After, the signal aborts, a late accept is dropped', async (t) => {
  let signal: AbortSignal | undefined
  let decide: ((value: HandshakeDecision) => void) | undefined
  let wsHandlerRan = false
  const { port, logs } = await start(t, (app) => {
    app.get('/slow', {
      websocket: true,
      handshake: (_request, ctx) => {
        signal = ctx.signal
        return new Promise((resolve) => { decide = resolve })
      }
    }, () => { wsHandlerRan = true })
  }, { handshakeTimeout: 100 })
  const res = await rawExchange(port, upgradeRequest('/slow'))
  const { statusLine, headerLines, body } = parseRaw(res.text)
  t.equal(statusLine, 'HTTP/1.1 503 Service Unavailable')
  t.strictSame(stableHead(headerLines), [
    'Content-Type: application/json; charset=utf-8', 'Retry-After: 5',
    `Content-Length: ${timeoutBody(100).length}`, 'Date: <date>', 'Connection: close'
  ])
  t.equal(body, timeoutBody(100))
  t.equal(res.closed, true)
  t.equal(signal?.aborted, true)
  t.equal((signal?.reason as { code: string }).code, 'FST_WS_GATE_HANDSHAKE_TIMEOUT')

  decide?.(accept())
  await wait(20)
  t.equal(wsHandlerRan, false, 'the late accept did not open a WebSocket')
  const warnings = logs.filter((line) => line.level === 40)
  t.equal(warnings.length, 1)
  t.equal(warnings[0].msg, 'handshake timed out')
  t.equal(warnings[0].timeout, 100)
  t.ok(logs.some((line) => line.level === 20 && line.msg === 'late handshake decision dropped'))
  t.equal(logs.filter((line) => line.level >= 50).length, 0)
})

t.test('a signal first read after the timeout is already aborted', async (t) => {
  let read: (() => AbortSignal) | undefined
  const { port } = await start(t, (app) => {
    app.get('/slow', {
      websocket: true,
      handshake: (_request, ctx) => { read = () => ctx.signal; return new Promise(() => {}) }
    }, () => {})
  }, { handshakeTimeout: 50 })
  await rawExchange(port, upgradeRequest('/slow'))
  const signal = read?.()
  t.equal(signal?.aborted, true)
  t.equal((signal?.reason as { code: string }).code, 'FST_WS_GATE_HANDSHAKE_TIMEOUT')
})

t.test('a late reject with a stream body has its stream destroyed; a late error is only logged at debug', async (t) => {
  let destroyed = false
  const body = new Readable({ read () {}, destroy (err, cb) { destroyed = true; cb(err) } })
  const decisions: Array<(value: HandshakeDecision) => void> = []
  const failures: Array<(err: unknown) => void> = []
  const { port, logs } = await start(t, (app) => {
    app.get('/slow', {
      websocket: true,
      handshake: () => new Promise((resolve, reject) => { decisions.push(resolve); failures.push(reject) })
    }, () => {})
  }, { handshakeTimeout: 50 })
  await rawExchange(port, upgradeRequest('/slow'))
  await rawExchange(port, upgradeRequest('/slow'))
  decisions[0](reject(401, undefined, { body }))
  failures[1](new Error('too late'))
  await wait(20)
  t.equal(destroyed, true)
  t.ok(logs.some((line) => line.level === 20 && line.msg === 'handshake handler failed after the handshake was settled'))
  t.equal(logs.filter((line) => line.level >= 50).length, 0)
})

t.test('a route overrides the plugin timeout, and 0 turns it off', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/short', { websocket: true, handshakeTimeout: 50, handshake: () => new Promise(() => {}) }, () => {})
    app.get('/off', {
      websocket: true,
      handshakeTimeout: 0,
      handshake: async () => { await wait(150); return reject(409) }
    }, () => {})
  }, { handshakeTimeout: 60_000 })
  const short = parseRaw((await rawExchange(port, upgradeRequest('/short'))).text)
  t.equal(short.statusLine, 'HTTP/1.1 503 Service Unavailable')
  t.equal(short.body, timeoutBody(50))
  const off = parseRaw((await rawExchange(port, upgradeRequest('/off'), 5000)).text)
  t.equal(off.statusLine, 'HTTP/1.1 409 Conflict', 'the 150 ms decision arrived: no timeout with 0')
})

t.test('the plugin timeout applies when the route sets none; 0 at the plugin turns it off', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/slow', { websocket: true, handshake: async () => { await wait(150); return reject(409) } }, () => {})
  }, { handshakeTimeout: 0 })
  const res = parseRaw((await rawExchange(port, upgradeRequest('/slow'), 5000)).text)
  t.equal(res.statusLine, 'HTTP/1.1 409 Conflict')
})

// Without sleeping 10 s: the plugin resolves its options with settings(), whose
// handshakeTimeout is what every route without its own timeout gets (the first
// test above: a plugin value of 100 reaches such a route, end to end). So the
// default is the value settings() resolves when the option is not given.
t.test('the default timeout is 10 s', async (t) => {
  t.equal(settings({}).handshakeTimeout, 10_000, 'no handshakeTimeout option: 10 000 ms')
  t.equal(settings({ handshakeTimeout: undefined }).handshakeTimeout, 10_000, 'an option given as undefined is the default too')
  t.equal(settings({ handshakeTimeout: 100 }).handshakeTimeout, 100, 'a value given is kept')
  t.equal(settings({ handshakeTimeout: 0 }).handshakeTimeout, 0, '0 is kept (no timeout), not replaced by the default')
})
