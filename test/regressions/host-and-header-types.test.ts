// Issue 17, item 7: an upgrade with no Host header, or two, must get 400
// before any application code (RFC 9112 §3.2; Node does it for ordinary
// requests), and a header value that is not a string (request objects made
// in-process, such as @fastify/websocket's injectWS()) must be handled,
// never a TypeError out of the 'upgrade' listener.
import Fastify from 'fastify'
import t from 'tap'
import fastifyWsGate, { accept } from '../../lib/index.js'
import { connectWs, opened, parseRaw, rawExchange, start, upgradeRequest } from '../helpers.js'

const ONE_HOST = { statusCode: 400, code: 'FST_WS_GATE_BAD_REQUEST', error: 'Bad Request', message: 'A request needs exactly one Host header' }

t.test('no Host, or two: 400 before routing; one: the handshake runs', async (t) => {
  let handshakes = 0
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => { handshakes++; return accept() } }, () => {})
  })
  for (const [what, request] of [
    ['no Host', upgradeRequest('/ws', { Host: null })],
    ['two Host lines', upgradeRequest('/ws', { Host: 'a.example', 'X-Other': 'x' }).replace('X-Other: x', 'host: b.example')],
    ['two Host lines with the same value', upgradeRequest('/ws', { Host: 'a.example', 'X-Other': 'x' }).replace('X-Other: x', 'HOST: a.example')]
  ] as const) {
    const res = await rawExchange(port, request)
    const { statusLine, headerLines, body } = parseRaw(res.text)
    t.equal(statusLine, 'HTTP/1.1 400 Bad Request', what)
    t.ok(headerLines.includes('Connection: close'), what)
    t.strictSame(JSON.parse(body), ONE_HOST, what)
    t.ok(res.closed, what)
  }
  t.equal(handshakes, 0, 'no application code ran')
  const ok = opened(await connectWs(port, '/ws'))
  ok.ws.close()
  t.equal(handshakes, 1)
})

t.test('with Node\'s requireHostHeader: false, an upgrade without Host is let through, as Node lets other requests', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  }, {}, { http: { requireHostHeader: false } } as never)
  t.equal(parseRaw((await rawExchange(port, upgradeRequest('/ws', { Host: null }), 300)).text).statusLine, 'HTTP/1.1 101 Switching Protocols')
  t.equal(parseRaw((await rawExchange(port, upgradeRequest('/ws', { Host: 'a', 'X-Other': 'x' }).replace('X-Other: x', 'Host: b'))).text).statusLine, 'HTTP/1.1 400 Bad Request', 'two are still refused')
})

t.test('header values that are not strings: a number is read as its text (and ws then sees that text), anything else is a 400', async (t) => {
  const app = Fastify()
  await app.register(fastifyWsGate)
  let version: unknown
  app.get('/ws', { websocket: true, handshake: (request) => { version = request.headers['sec-websocket-version']; return accept() } }, () => {})
  await app.ready()
  t.teardown(() => app.close())
  // injectWS() sends Sec-WebSocket-Version as the number 13.
  const ws = await app.injectWS('/ws')
  t.equal(version, '13')
  ws.terminate()
  const refused = await app.injectWS('/ws', { headers: { 'sec-websocket-protocol': ['a', 'b'] as unknown as string } }).then(() => 'opened', (err: Error) => err.message)
  t.equal(refused, 'Unexpected server response: 400')
})
