// ws's verifyClient and handleProtocols options, which the gate calls itself
// when it hands an upgrade to ws (lib/ws/handover.ts): what verifyClient
// is told, what its refusals put on the wire (as ws alone writes them, but
// checked), a client that leaves while it decides; and handleProtocols
// choosing no subprotocol.
import diagnostics from 'node:diagnostics_channel'
import { once } from 'node:events'
import { connect } from 'node:net'
import Fastify from 'fastify'
import t from 'tap'
import fastifyWsGate, { accept, HANDSHAKE_CHANNEL, type HandshakeEvent } from '../lib/index.js'
import { eventually, parseRaw, rawExchange, stableHead, start, upgradeRequest } from './helpers.js'

interface Info { origin: string | undefined, secure: boolean, req: { url?: string } }

t.test('a synchronous verifyClient that lets the client in: 101, and it was told the origin and that the connection is not secure', async (t) => {
  const seen: Array<{ origin: string | undefined, secure: boolean, url: string }> = []
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  }, { websocket: { options: { verifyClient: (info: Info) => { seen.push({ origin: info.origin, secure: info.secure, url: info.req.url as string }); return true } } } })
  t.equal(parseRaw((await rawExchange(port, upgradeRequest('/ws', { Origin: 'https://app.example' }), 300)).text).statusLine, 'HTTP/1.1 101 Switching Protocols')
  t.strictSame(seen, [{ origin: 'https://app.example', secure: false, url: '/ws' }])
})

t.test('a refusal with a message and headers goes out as ws writes it, through the gate\'s writer', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  }, { websocket: { options: { verifyClient: (_info: Info, done: (ok: boolean, code: number, message: string, headers: Record<string, string>) => void) => { done(false, 429, 'slow down', { 'Retry-After': '30' }) } } } })
  const res = await rawExchange(port, upgradeRequest('/ws'))
  const { statusLine, headerLines, body } = parseRaw(res.text)
  t.equal(statusLine, 'HTTP/1.1 429 Too Many Requests')
  t.strictSame(stableHead(headerLines), ['Content-Type: text/html', 'Retry-After: 30', 'Content-Length: 9', 'Date: <date>', 'Connection: close'])
  t.equal(body, 'slow down')
  t.ok(res.closed)
})

t.test('a refusal that cannot go on the wire (a bad status, a header with CR/LF) is a 500, logged', async (t) => {
  const refusals: Array<[number, Record<string, string>]> = [[99, {}], [401, { 'X-Evil': 'a\r\nSet-Cookie: x=1' }]]
  let next = 0
  const { port, logs } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  }, { websocket: { options: { verifyClient: (_info: Info, done: (ok: boolean, code: number, message: string | undefined, headers: Record<string, string>) => void) => { const [code, headers] = refusals[next++]; done(false, code, undefined, headers) } } } })
  for (const code of ['FST_WS_GATE_INVALID_STATUS', 'FST_WS_GATE_INVALID_HEADER']) {
    logs.length = 0
    const res = await rawExchange(port, upgradeRequest('/ws'))
    const { statusLine, body } = parseRaw(res.text)
    t.equal(statusLine, 'HTTP/1.1 500 Internal Server Error')
    t.strictSame(JSON.parse(body), { statusCode: 500, error: 'Internal Server Error', message: 'Internal Server Error' })
    t.notMatch(res.text, /Set-Cookie/)
    t.strictSame(logs.filter((line) => line.level === 50).map((line) => [line.msg, (line.err as { code: string }).code]), [['invalid verifyClient refusal', code]])
  }
})

t.test('a client that resets its connection while verifyClient decides: aborted, nothing thrown', async (t) => {
  const events: HandshakeEvent[] = []
  const listen = (message: unknown): void => { events.push(message as HandshakeEvent) }
  diagnostics.subscribe(HANDSHAKE_CHANNEL, listen)
  t.teardown(() => { diagnostics.unsubscribe(HANDSHAKE_CHANNEL, listen) })
  let verifying: ((ok: boolean) => void) | undefined
  const { app, port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  }, { websocket: { options: { verifyClient: (_info: Info, done: (ok: boolean) => void) => { verifying = done } } } })
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(upgradeRequest('/ws'))
  t.ok(await eventually(() => verifying !== undefined, 2000))
  socket.resetAndDestroy()
  t.ok(await eventually(() => events.length === 1, 2000))
  t.strictSame(events.map(({ outcome, status }) => ({ outcome, status })), [{ outcome: 'aborted', status: null }])
  t.equal(app.wsGate.pending, 0)
  ;(verifying as (ok: boolean) => void)(true)
})

t.test('injectWS() with a verifyClient: its request has no socket, and is not secure', async (t) => {
  const app = Fastify()
  let secure: boolean | undefined
  await app.register(fastifyWsGate, { websocket: { options: { verifyClient: (info: Info) => { secure = info.secure; return true } } } })
  app.get('/ws', { websocket: true }, () => {})
  await app.ready()
  t.teardown(() => app.close())
  const ws = await app.injectWS('/ws')
  t.equal(secure, false)
  ws.terminate()
})

t.test('a refusal with a status that has no phrase, and no message: an empty body', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  }, { websocket: { options: { verifyClient: (_info: Info, done: (ok: boolean, code: number) => void) => { done(false, 599) } } } })
  const { statusLine, headerLines, body } = parseRaw((await rawExchange(port, upgradeRequest('/ws'))).text)
  t.equal(statusLine, 'HTTP/1.1 599 ')
  t.ok(headerLines.includes('Content-Length: 0'))
  t.equal(body, '')
})

t.test('handleProtocols choosing none, on a route without a decision: a 101 with no subprotocol', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true }, () => {})
  }, { websocket: { options: { handleProtocols: () => false } } })
  const { statusLine, headerLines } = parseRaw((await rawExchange(port, upgradeRequest('/ws', { 'Sec-WebSocket-Protocol': 'a, b' }), 300)).text)
  t.equal(statusLine, 'HTTP/1.1 101 Switching Protocols')
  t.notOk(headerLines.some((line) => /^sec-websocket-protocol:/i.test(line)))
})
