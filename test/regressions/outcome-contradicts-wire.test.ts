// Issue 17, item 6: with ws's verifyClient refusing after the handler
// accepted, the client got 403 but the diagnostics channel published
// `accepted`/101. An outcome is published once the wire has it: an accept
// when ws writes the 101; a refusal by ws (verifyClient, or a malformed
// extension offer, which the gate now answers itself) with its status.
import diagnostics from 'node:diagnostics_channel'
import t from 'tap'
import { accept, HANDSHAKE_CHANNEL, reject, type HandshakeEvent } from '../../lib/index.js'
import { eventually, parseRaw, rawExchange, start, upgradeRequest } from '../helpers.js'

function subscribe (t: tap.Test): Array<Pick<HandshakeEvent, 'outcome' | 'route' | 'status'>> {
  const events: Array<Pick<HandshakeEvent, 'outcome' | 'route' | 'status'>> = []
  const listen = (message: unknown): void => {
    const { outcome, route, status } = message as HandshakeEvent
    events.push({ outcome, route, status })
  }
  diagnostics.subscribe(HANDSHAKE_CHANNEL, listen)
  t.teardown(() => { diagnostics.unsubscribe(HANDSHAKE_CHANNEL, listen) })
  return events
}

for (const style of ['callback', 'callback without a code', 'sync'] as const) {
  t.test(`verifyClient (${style}) refusing after the handshake accepted: the event says rejected with ws's status, never accepted`, async (t) => {
    const events = subscribe(t)
    const verifyClient = style === 'sync'
      ? () => false
      : (_info: unknown, done: (verified: boolean, code?: number) => void) => { setTimeout(() => { if (style === 'callback') done(false, 403); else done(false) }, 5) }
    const { app, port } = await start(t, (app) => {
      app.get('/ws', { websocket: true, handshake: async () => accept() }, () => {})
    }, { websocket: { options: { verifyClient } } })
    const res = await rawExchange(port, upgradeRequest('/ws'))
    const status = style === 'callback' ? 403 : 401
    t.equal(parseRaw(res.text).statusLine, style === 'callback' ? 'HTTP/1.1 403 Forbidden' : 'HTTP/1.1 401 Unauthorized')
    t.ok(await eventually(() => events.length === 1))
    t.strictSame(events, [{ outcome: 'rejected', route: '/ws', status }])
    t.equal(app.wsGate.pending, 0)
  })
}

t.test('verifyClient refusing after a close-frame refusal: rejected with ws\'s status', async (t) => {
  const events = subscribe(t)
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => reject(401, 'no') }, () => {})
  }, { rejectVia: 'close-frame', websocket: { options: { verifyClient: (_info: unknown, done: (verified: boolean, code?: number) => void) => { done(false, 409) } } } })
  t.equal(parseRaw((await rawExchange(port, upgradeRequest('/ws'))).text).statusLine, 'HTTP/1.1 409 Conflict')
  t.ok(await eventually(() => events.length === 1))
  t.strictSame(events, [{ outcome: 'rejected', route: '/ws', status: 409 }])
})

t.test('verifyClient letting the client in: accepted/101, published once', async (t) => {
  const events = subscribe(t)
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  }, { websocket: { options: { verifyClient: (_info: unknown, done: (verified: boolean) => void) => { setTimeout(() => done(true), 5) } } } })
  const res = await rawExchange(port, upgradeRequest('/ws'), 300)
  t.equal(parseRaw(res.text).statusLine, 'HTTP/1.1 101 Switching Protocols')
  t.strictSame(events, [{ outcome: 'accepted', route: '/ws', status: 101 }])
})

t.test('a malformed Sec-WebSocket-Extensions offer, which ws finds after the handshake accepted: the gate answers 400 and says so', async (t) => {
  const events = subscribe(t)
  let connections = 0
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => { connections++ })
  }, { websocket: { options: { perMessageDeflate: true } } })
  const res = await rawExchange(port, upgradeRequest('/ws', { 'Sec-WebSocket-Extensions': 'permessage-deflate; server_max_window_bits=99' }))
  const { statusLine, headerLines, body } = parseRaw(res.text)
  t.equal(statusLine, 'HTTP/1.1 400 Bad Request')
  t.ok(headerLines.includes('Connection: close'))
  t.strictSame(JSON.parse(body), { statusCode: 400, code: 'FST_WS_GATE_BAD_REQUEST', error: 'Bad Request', message: 'Invalid or unacceptable Sec-WebSocket-Extensions header' })
  t.ok(res.closed)
  t.equal(connections, 0)
  t.strictSame(events, [{ outcome: 'rejected', route: '/ws', status: 400 }])
})
