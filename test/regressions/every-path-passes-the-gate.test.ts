// Issue 17, item 2: `websocket: { options: { server } }` (ws's option for
// another server) was silently overwritten: that server's upgrades went
// unanswered and upgrades on the app's own port were accepted instead; with
// @fastify/websocket registered first with `server`, that server's upgrades
// reached routes without their handshake. Now the gate receives the other
// server's upgrades, refuses what it cannot guard, and ws upgrades nothing
// the gate did not admit.
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import fastifyWebsocket from '@fastify/websocket'
import Fastify from 'fastify'
import diagnostics from 'node:diagnostics_channel'
import t from 'tap'
import fastifyWsGate, { accept, HANDSHAKE_CHANNEL, reject } from '../../lib/index.js'
import { connectWs, denied, eventually, opened, parseRaw, rawExchange, start, upgradeRequest } from '../helpers.js'

async function externalServer (t: tap.Test): Promise<{ server: Server, port: number }> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return { server, port: (server.address() as { port: number }).port }
}

t.test('ws\'s `server` option given to the gate: that server\'s upgrades pass the gate, the app\'s own port serves no WebSocket', async (t) => {
  const external = await externalServer(t)
  let handshakes = 0
  const { app, port } = await start(t, (app) => {
    app.get('/ws', {
      websocket: true,
      handshake: (request) => { handshakes++; return request.query !== null && (request.query as { token?: string }).token === 'ok' ? accept() : reject(401, 'Bad token') }
    }, (socket) => { socket.send('hello') })
  }, { websocket: { options: { server: external.server } } })
  t.equal(external.server.listenerCount('upgrade'), 1, 'the gate listens on the other server')
  t.equal(app.server.listenerCount('upgrade'), 0, 'and not on its own')

  const refused = denied(await connectWs(external.port, '/ws?token=no'))
  t.equal(refused.statusCode, 401)
  t.strictSame(JSON.parse(refused.body), { statusCode: 401, error: 'Unauthorized', message: 'Bad token' })
  const ok = opened(await connectWs(external.port, '/ws?token=ok'))
  t.equal(await ok.first, 'hello')
  ok.ws.close()
  t.equal(handshakes, 2)

  // As under @fastify/websocket alone: an ordinary request on the app's port (its WebSocket route's HTTP answer, 404).
  const own = denied(await connectWs(port, '/ws?token=ok'))
  t.equal(own.statusCode, 404)
  t.equal(handshakes, 2, 'no handshake ran for the app\'s own port')
  // A malformed handshake on the other server is answered by the gate's checks.
  t.equal(parseRaw((await rawExchange(external.port, upgradeRequest('/ws', { 'Sec-WebSocket-Version': '8' }))).text).statusLine, 'HTTP/1.1 426 Upgrade Required')

  await app.close()
  t.equal(external.server.listenerCount('upgrade'), 0, 'close removes the gate\'s listener from the other server')
})

t.test('@fastify/websocket registered first with `server`, then the gate: a registration error, not a bypass', async (t) => {
  const external = await externalServer(t)
  const app = Fastify()
  await app.register(fastifyWebsocket, { options: { server: external.server } })
  const err = await app.register(fastifyWsGate).ready().then(() => null, (err: Error) => err)
  t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_REGISTRATION')
  t.equal(err?.message, 'fastify-ws-gate must be registered once, on the root instance: @fastify/websocket was registered with options.server; register it through fastify-ws-gate\'s `websocket` option instead, so that the gate receives that server\'s upgrades')
  await app.close()
})

t.test('ws\'s noServer option is refused at registration with a coded error', async (t) => {
  const app = Fastify()
  const err = await app.register(fastifyWsGate, { websocket: { options: { noServer: true } } }).ready().then(() => null, (err: Error) => err)
  t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_INVALID_OPTION')
  t.equal(err?.message, 'Invalid fastify-ws-gate option websocket: options.noServer is not supported: upgrades reach ws through the gate (use options.server for another server)')
  await app.close()
})

t.test('ws\'s path option is honoured through the gate: other paths get 400 from the gate, after their handshake', async (t) => {
  let handshakes = 0
  const { port, logs } = await start(t, (app) => {
    app.get('/*', { websocket: true, handshake: () => { handshakes++; return accept() } }, (socket) => { socket.send('here') })
  }, { websocket: { options: { path: '/only' } as never } })
  const ok = opened(await connectWs(port, '/only'))
  t.equal(await ok.first, 'here')
  ok.ws.close()
  const other = denied(await connectWs(port, '/elsewhere'))
  t.equal(other.statusCode, 400)
  t.strictSame(JSON.parse(other.body), { statusCode: 400, code: 'FST_WS_GATE_BAD_REQUEST', error: 'Bad Request', message: 'This WebSocket server serves "/only" only' })
  t.equal(other.headers.connection, 'close')
  t.equal(handshakes, 2)
  t.ok(logs.some((line) => line.level === 40 && line.msg === 'ws server path option shouldn\'t be provided, use a route instead'), '@fastify/websocket\'s own warning')
})

t.test('ws\'s handleUpgrade() called by other code, past the gate, is refused with 500 and logged', async (t) => {
  const external = await externalServer(t)
  let connections = 0
  const { app, logs } = await start(t, (app) => {
    app.get('/ws', { websocket: true }, () => {})
  })
  app.websocketServer.on('connection', () => { connections++ })
  external.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    app.websocketServer.handleUpgrade(req, socket, head, () => { connections++ })
  })
  const res = await rawExchange(external.port, upgradeRequest('/ws'))
  const { statusLine, body } = parseRaw(res.text)
  t.equal(statusLine, 'HTTP/1.1 500 Internal Server Error')
  t.strictSame(JSON.parse(body), { statusCode: 500, error: 'Internal Server Error', message: 'Internal Server Error' })
  t.ok(res.closed)
  t.equal(connections, 0)
  const errors = logs.filter((line) => line.level === 50)
  t.equal(errors.length, 1)
  t.equal((errors[0].err as { code: string }).code, 'FST_WS_GATE_UNGATED_ROUTE')
  t.equal((errors[0].err as { message: string }).message, 'The upgrade reached ws\'s handleUpgrade() for "/ws" without passing fastify-ws-gate; it was refused')
  t.ok(await eventually(() => app.wsGate.pending === 0))
})

t.test('ws\'s handleUpgrade() called from a hook, for an upgrade the gate has not admitted yet, is refused with 500', async (t) => {
  let connections = 0
  let handshakes = 0
  const events: Array<{ outcome: string, status: number | null }> = []
  const listen = (message: unknown): void => { const { outcome, status } = message as { outcome: string, status: number | null }; events.push({ outcome, status }) }
  diagnostics.subscribe(HANDSHAKE_CHANNEL, listen)
  t.teardown(() => { diagnostics.unsubscribe(HANDSHAKE_CHANNEL, listen) })
  const { app, port, logs } = await start(t, (app) => {
    app.addHook('preHandler', (request, reply, done) => {
      reply.hijack()
      app.websocketServer.handleUpgrade(request.raw, request.raw.socket, Buffer.alloc(0), () => { connections++ })
      done()
    })
    app.get('/ws', { websocket: true, handshake: () => { handshakes++; return accept() } }, () => {})
  })
  const res = await rawExchange(port, upgradeRequest('/ws'))
  t.equal(parseRaw(res.text).statusLine, 'HTTP/1.1 500 Internal Server Error')
  t.equal(connections, 0)
  t.equal(handshakes, 0)
  t.strictSame(logs.filter((line) => line.level === 50).map((line) => (line.err as { code: string }).code), ['FST_WS_GATE_UNGATED_ROUTE'])
  t.strictSame(events, [{ outcome: 'error', status: 500 }])
  t.ok(await eventually(() => app.wsGate.pending === 0))
})
