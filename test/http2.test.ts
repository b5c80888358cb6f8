// WebSockets over HTTP/2 (RFC 8441) with Node's http2 client: the setting,
// the checks, accepts and denials on one stream each, and the session
// living on for the other streams.
import { once } from 'node:events'
import diagnostics from 'node:diagnostics_channel'
import http2 from 'node:http2'
import t from 'tap'
import { accept, HANDSHAKE_CHANNEL, reject, type HandshakeEvent } from '../lib/index.js'
import { start } from './helpers.js'
import { h2connect, h2session, nextMessage } from './h2-helpers.js'

const H2 = { http2: true } as const

t.test('the server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL in its first SETTINGS frame', async (t) => {
  const { port } = await start(t, () => {}, {}, H2 as never)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  t.equal(session.remoteSettings.enableConnectProtocol, true)
})

t.test('an accepted handshake answers :status 200 with its subprotocol and headers, then runs ws frames on the stream', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/chat', {
      websocket: true,
      handshake: (_request, { protocols }) => accept({ protocol: protocols[1], headers: { 'x-room': 'lobby' } })
    }, (socket, request) => {
      socket.send(`hello over ${request.raw.httpVersion} ${request.method}`)
      socket.on('message', (data, isBinary) => { socket.send(data, { binary: isBinary }) })
    })
  }, {}, H2 as never)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const answer = await h2connect(session, '/chat', { protocols: ['a', 'b'] })
  t.equal(answer.status, 200)
  t.equal(answer.headers['sec-websocket-protocol'], 'b')
  t.equal(answer.headers['x-room'], 'lobby')
  t.equal(answer.headers['sec-websocket-accept'], undefined)
  const ws = answer.ws!
  t.equal(await nextMessage(ws), 'hello over 2.0 GET')
  ws.send('text')
  t.equal(await nextMessage(ws), 'text')
  const big = Buffer.alloc(1024 * 1024, 7)
  ws.send(big)
  const [echoed, isBinary] = await once(ws, 'message') as [Buffer, boolean]
  t.equal(isBinary, true)
  t.ok(big.equals(echoed))
  ws.ping('p')
  const [pong] = await once(ws, 'pong') as [Buffer]
  t.equal(String(pong), 'p')
  ws.close(4001, 'bye')
  const [code, reason] = await once(ws, 'close') as [number, Buffer]
  t.equal(code, 4001)
  t.equal(String(reason), 'bye')
  t.equal(await answer.closed, 0)
})

t.test('a rejected handshake is a response on its stream; the session lives on for the next one', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/private', {
      websocket: true,
      handshake: (request) => request.headers.authorization === 'ok' ? accept() : reject(401, 'Who are you?', { headers: { 'www-authenticate': 'Bearer' } })
    }, (socket) => { socket.send('in') })
  }, {}, H2 as never)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const refused = await h2connect(session, '/private')
  t.equal(refused.status, 401)
  t.equal(refused.headers['www-authenticate'], 'Bearer')
  t.equal(refused.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(refused.body, JSON.stringify({ statusCode: 401, error: 'Unauthorized', message: 'Who are you?' }))
  t.equal(refused.headers['content-length'], String(Buffer.byteLength(refused.body)))
  t.equal(refused.headers.connection, undefined)
  t.equal(await refused.closed, 0, 'the stream is closed with NO_ERROR')
  t.equal(session.destroyed || session.closed, false)
  const admitted = await h2connect(session, '/private', { headers: { authorization: 'ok' } })
  t.equal(admitted.status, 200)
  t.equal(await nextMessage(admitted.ws!), 'in')
  admitted.ws!.close()
})

t.test('the RFC 8441 checks answer before any application code, with the statuses of HTTP/1.1', async (t) => {
  let ran = 0
  const { port } = await start(t, (app) => {
    app.addHook('onRequest', async () => { ran++ })
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  }, {}, H2 as never)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const version = await h2connect(session, '/ws', { pseudo: { 'sec-websocket-version': '8' } })
  t.equal(version.status, 426)
  t.equal(version.headers['sec-websocket-version'], '13')
  t.equal(JSON.parse(version.body).code, 'FST_WS_GATE_UNSUPPORTED_VERSION')
  const noVersion = await h2connect(session, '/ws', { pseudo: { 'sec-websocket-version': undefined } })
  t.equal(noVersion.status, 426)
  const protocol = await h2connect(session, '/ws', { pseudo: { ':protocol': 'webtransport' } })
  t.equal(protocol.status, 400)
  t.equal(JSON.parse(protocol.body).message, 'Unsupported :protocol "webtransport": expected "websocket"')
  const upper = await h2connect(session, '/ws', { pseudo: { ':protocol': 'WebSocket' } })
  t.equal(upper.status, 200, ':protocol is a token, compared without case')
  upper.ws!.close()
  const subprotocols = await h2connect(session, '/ws', { headers: { 'sec-websocket-protocol': 'a,,b' } })
  t.equal(subprotocols.status, 400)
  t.equal(JSON.parse(subprotocols.body).message, 'Invalid Sec-WebSocket-Protocol header')
  t.equal(ran, 1, 'only the accepted handshake reached the hooks')
})

t.test('hooks, the 404 handler and plain routes answer on the stream as Fastify replies', async (t) => {
  const { port } = await start(t, (app) => {
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers['x-deny'] !== undefined) await reply.code(403).send({ denied: true })
    })
    app.get('/ws', { websocket: true }, (socket) => { socket.send('plain route accepted') })
    app.get('/http', async () => 'not a WebSocket route')
  }, {}, H2 as never)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const hooked = await h2connect(session, '/ws', { headers: { 'x-deny': '1' } })
  t.equal(hooked.status, 403)
  t.equal(hooked.body, '{"denied":true}')
  t.equal(hooked.headers.connection, undefined)
  t.equal(await hooked.closed, 0)
  const missing = await h2connect(session, '/nowhere')
  t.equal(missing.status, 404)
  t.same(JSON.parse(missing.body), { message: 'Route GET:/nowhere not found', error: 'Not Found', statusCode: 404 })
  const plain = await h2connect(session, '/http')
  t.equal(plain.status, 400)
  t.equal(JSON.parse(plain.body).code, 'FST_WS_GATE_NOT_WEBSOCKET_ROUTE')
  const open = await h2connect(session, '/ws')
  t.equal(open.status, 200)
  t.equal(await nextMessage(open.ws!), 'plain route accepted')
  open.ws!.close()
})

t.test('each outcome is published once, with the status that went on the stream', async (t) => {
  const events: HandshakeEvent[] = []
  const listen = (event: unknown): void => { events.push(event as HandshakeEvent) }
  diagnostics.subscribe(HANDSHAKE_CHANNEL, listen)
  t.teardown(() => { diagnostics.unsubscribe(HANDSHAKE_CHANNEL, listen) })
  const { port, app } = await start(t, (app) => {
    app.get('/d', { websocket: true, handshake: (request) => request.headers['x-ok'] === '1' ? accept() : reject(409) }, (socket) => { socket.close() })
  }, {}, H2 as never)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  await h2connect(session, '/d', { headers: { 'x-ok': '1' } })
  await h2connect(session, '/d')
  await h2connect(session, '/d', { pseudo: { 'sec-websocket-version': '7' } })
  t.same(events.map(({ outcome, status, route }) => [outcome, status, route]), [
    ['accepted', 200, '/d'],
    ['rejected', 409, '/d'],
    ['rejected', 426, null]
  ])
  t.equal(app.wsGate.pending, 0)
})

t.test('http2: false: the setting is not advertised, and Node resets an extended CONNECT with PROTOCOL_ERROR', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true }, () => {})
  }, { http2: false }, H2 as never)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  t.equal(session.remoteSettings.enableConnectProtocol, false)
  const refused = await h2connect(session, '/ws').catch((err: Error) => err.message)
  t.equal(refused, `stream closed before a response (code ${http2.constants.NGHTTP2_PROTOCOL_ERROR})`)
})

t.test('allowedOrigins and handshakeTimeout hold over HTTP/2 as over HTTP/1.1', async (t) => {
  let aborted: unknown
  const { port, app } = await start(t, (app) => {
    app.get('/ws', { websocket: true, allowedOrigins: ['https://app.example'], handshake: () => accept() }, (socket) => { socket.send('hi') })
    app.get('/slow', {
      websocket: true,
      handshakeTimeout: 100,
      handshake: (_request, { signal }) => new Promise(() => { signal.addEventListener('abort', () => { aborted = signal.reason }) })
    }, () => {})
  }, {}, H2 as never)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const foreign = await h2connect(session, '/ws', { headers: { origin: 'https://evil.example' } })
  t.equal(foreign.status, 403)
  t.equal(JSON.parse(foreign.body).code, 'FST_WS_GATE_ORIGIN_NOT_ALLOWED')
  const own = await h2connect(session, '/ws', { headers: { origin: 'https://app.example' } })
  t.equal(own.status, 200)
  t.equal(await nextMessage(own.ws!), 'hi')
  own.ws!.close()
  const slow = await h2connect(session, '/slow')
  t.equal(slow.status, 503)
  t.equal(slow.headers['retry-after'], '5')
  t.equal(JSON.parse(slow.body).code, 'FST_WS_GATE_HANDSHAKE_TIMEOUT')
  t.equal((aborted as { code?: string } | undefined)?.code, 'FST_WS_GATE_HANDSHAKE_TIMEOUT')
  t.equal(app.wsGate.pending, 0)
})
