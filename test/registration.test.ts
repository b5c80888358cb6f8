// Contract point 12 and option validation: the plugin registers
// @fastify/websocket itself or works with one already registered, respects
// encapsulation, and rejects bad options at registration with a coded error.
import fastifyWebsocket from '@fastify/websocket'
import Fastify from 'fastify'
import t from 'tap'
import fastifyWsGate, { accept, reject } from '../lib/index.js'
import { connectWs, denied, opened, parseRaw, rawExchange, start, upgradeRequest } from './helpers.js'

t.test('invalid plugin options fail registration with FST_WS_GATE_INVALID_OPTION', async (t) => {
  const bad: Array<[object, RegExp]> = [
    [{ handshakeTimeout: -1 }, /^Invalid fastify-ws-gate option handshakeTimeout: must be an integer number of milliseconds from 0 to 2147483647, got -1$/],
    [{ handshakeTimeout: 1.5 }, /got 1\.5$/],
    [{ handshakeTimeout: '100' }, /got 100$/],
    [{ handshakeTimeout: 2 ** 31 }, /got 2147483648$/],
    [{ websocket: 'yes' }, /^Invalid fastify-ws-gate option websocket: must be the options object of @fastify\/websocket$/],
    [{ websocket: null }, /must be the options object/]
  ]
  for (const [options, message] of bad) {
    const app = Fastify()
    const err = await app.register(fastifyWsGate, options as never).ready().then(() => null, (err: Error) => err)
    t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_INVALID_OPTION', JSON.stringify(options))
    t.match(err?.message, message)
    t.ok(err instanceof TypeError)
    await app.close()
  }
})

t.test('invalid route options fail at route registration with FST_WS_GATE_INVALID_ROUTE_OPTION', async (t) => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ websocket: true, handshake: 'accept' }, /^Invalid option handshake on route GET \/x: must be a function$/],
    [{ handshake: () => accept() }, /^Invalid option handshake on route GET \/x: needs websocket: true$/],
    [{ handshakeTimeout: 5 }, /^Invalid option handshakeTimeout on route GET \/x: needs websocket: true$/],
    [{ websocket: true, handshake: () => accept(), handshakeTimeout: -5 }, /^Invalid option handshakeTimeout on route GET \/x: must be an integer/],
    [{ websocket: true, handshakeTimeout: 5 }, /^Invalid option handshakeTimeout on route GET \/x: needs a handshake handler$/]
  ]
  for (const [options, message] of bad) {
    const app = Fastify()
    await app.register(fastifyWsGate)
    let err: Error | null = null
    try {
      app.get('/x', options as never, async () => 'x')
      await app.ready()
    } catch (caught) {
      err = caught as Error
    }
    t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_INVALID_ROUTE_OPTION', message.source)
    t.match(err?.message, message)
    await app.close()
  }
})

t.test('options under `websocket` are forwarded to @fastify/websocket', async (t) => {
  const { app, port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  }, { websocket: { options: { maxPayload: 1234 } } })
  t.equal(app.websocketServer.options.maxPayload, 1234)
  const outcome = opened(await connectWs(port, '/ws'))
  outcome.ws.close()
})

t.test('works when the app registered @fastify/websocket first, keeping its handleProtocols for other routes', async (t) => {
  const { port } = await start(t, async (app) => {
    await app.register(fastifyWebsocket, { options: { handleProtocols: (protocols) => [...protocols].pop() ?? false } })
    await app.register(fastifyWsGate)
    app.get('/gated', { websocket: true, handshake: (_r, { protocols }) => accept({ protocol: protocols[0] }) }, () => {})
    app.get('/open', { websocket: true }, () => {})
    app.get('/plain', async () => 'plain')
  }, null)
  const gated = opened(await connectWs(port, '/gated', { protocols: ['x', 'y'] }))
  t.equal(gated.protocol, 'x', 'the handshake decision wins')
  gated.ws.close()
  const open = opened(await connectWs(port, '/open', { protocols: ['x', 'y'] }))
  t.equal(open.protocol, 'y', 'the app\'s own handleProtocols still decides routes without handshake')
  open.ws.close()
  t.equal(denied(await connectWs(port, '/plain')).statusCode, 400)
  const old = parseRaw((await rawExchange(port, upgradeRequest('/gated', { 'Sec-WebSocket-Version': '8' }))).text)
  t.equal(old.statusLine, 'HTTP/1.1 426 Upgrade Required', 'checks still run first')
})

t.test('websocket options alongside a registered @fastify/websocket are refused', async (t) => {
  const app = Fastify()
  await app.register(fastifyWebsocket)
  const err = await app.register(fastifyWsGate, { websocket: {} }).ready().then(() => null, (err: Error) => err)
  t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_INVALID_OPTION')
  t.match(err?.message, /@fastify\/websocket is already registered; configure it there/)
  await app.close()
})

t.test('handshake works in child contexts and under a prefix', async (t) => {
  const { port } = await start(t, async (app) => {
    await app.register(async (child) => {
      child.addHook('onRequest', async (request) => { (request as unknown as { tenant: string }).tenant = 'acme' })
      child.get('/room', {
        websocket: true,
        handshake: (request) => (request as unknown as { tenant: string }).tenant === 'acme' ? accept() : reject(403)
      }, (socket) => socket.send('tenant room'))
    }, { prefix: '/t' })
    app.get('/room', { websocket: true, handshake: () => reject(404, 'not here') }, () => {})
  })
  const child = opened(await connectWs(port, '/t/room'))
  t.equal(await child.first, 'tenant room')
  child.ws.close()
  t.equal(denied(await connectWs(port, '/room')).statusCode, 404, 'the child hook did not leak to the parent')
})

t.test('registration in a child context, or twice, fails with FST_WS_GATE_REGISTRATION', async (t) => {
  const child = Fastify()
  child.register(async (scope) => { await scope.register(fastifyWsGate) }, { prefix: '/api' })
  const inChild = await child.ready().then(() => null, (err: Error) => err)
  t.equal((inChild as { code?: string } | null)?.code, 'FST_WS_GATE_REGISTRATION')
  t.equal(inChild?.message, 'fastify-ws-gate must be registered once, on the root instance: it was registered in a child context (routes in every context are gated from the root)')
  await child.close()

  const twice = Fastify()
  twice.register(fastifyWsGate)
  twice.register(fastifyWsGate)
  const again = await twice.ready().then(() => null, (err: Error) => err)
  t.equal((again as { code?: string } | null)?.code, 'FST_WS_GATE_REGISTRATION')
  t.equal(again?.message, 'fastify-ws-gate must be registered once, on the root instance: it is already registered on this server')
  await twice.close()
})

t.test('close removes the upgrade listener and gives Fastify its request listener back', async (t) => {
  const app = Fastify()
  const [fastifyHandler] = app.server.listeners('request')
  await app.register(fastifyWsGate)
  await app.ready()
  t.equal(app.server.listenerCount('upgrade'), 1)
  t.not(app.server.listeners('request')[0], fastifyHandler)
  await app.close()
  t.equal(app.server.listenerCount('upgrade'), 0)
  t.strictSame(app.server.listeners('request'), [fastifyHandler])
})

t.test('@fastify/websocket\'s injectWS() still works on routes without a handshake (it does not pass the gate)', async (t) => {
  const app = Fastify()
  await app.register(fastifyWsGate)
  let protocol: string | undefined
  app.get('/open', { websocket: true }, (socket) => { protocol = socket.protocol })
  await app.ready()
  t.teardown(() => app.close())
  const ws = await app.injectWS('/open', { headers: { 'sec-websocket-protocol': 'a, b' } })
  t.equal(ws.readyState, ws.OPEN)
  t.equal(protocol, 'a', 'the handler ran, with ws\'s own choice: the first offer')
  ws.terminate()
})
