// Issue 17, item 5: during app.close(), with an accepted client that never
// answers the 1001 close frame, an upgrade still inside an async hook on a
// plain `websocket: true` route (no handshake) got a 101 that was never
// closed, and close() never settled. Every upgrade that reaches the gate
// once close() has been called gets 503 with Retry-After, and close() settles.
import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import Fastify from 'fastify'
import fastifyWsGate, { accept } from '../../lib/index.js'
import { collect, eventually, parseRaw, start, upgradeAndWait, upgradeRequest } from '../helpers.js'

const SHUTTING_DOWN = { statusCode: 503, code: 'FST_WS_GATE_SHUTTING_DOWN', error: 'Service Unavailable', message: 'The server is shutting down' }

for (const route of ['a plain WebSocket route', 'a route with a handshake'] as const) {
  t.test(`an upgrade in an async hook on ${route} when close() begins gets 503, and close() settles`, async (t) => {
    let inHook = 0
    let release: () => void = () => {}
    const held = new Promise<void>((resolve) => { release = resolve })
    let connections = 0
    const { app, port } = await start(t, (app) => {
      app.addHook('onRequest', async (request) => {
        if (request.url !== '/slow') return
        inHook++
        await held
      })
      const options = route === 'a plain WebSocket route' ? { websocket: true as const } : { websocket: true as const, handshake: () => accept() }
      app.get('/fast', options, () => {})
      app.get('/slow', options, () => { connections++ })
    })
    // An accepted client that never answers the close frame: its raw socket reads nothing back.
    const { socket: stubborn, first } = await upgradeAndWait(port, '/fast')
    t.match(first.toString('latin1'), /^HTTP\/1\.1 101 Switching Protocols\r\n/)
    stubborn.pause()
    // An upgrade that is in an async hook when close() is called.
    const late = connect(port, '127.0.0.1')
    await once(late, 'connect')
    const answer = collect(late, upgradeRequest('/slow'), 5000)
    t.ok(await eventually(() => inHook === 1, 2000), 'in the hook')

    const closed = app.close()
    release()
    const res = await answer
    const { statusLine, headerLines, body } = parseRaw(res.text)
    t.equal(statusLine, 'HTTP/1.1 503 Service Unavailable')
    t.ok(headerLines.includes('Retry-After: 5'))
    t.ok(headerLines.includes('Connection: close'))
    t.strictSame(JSON.parse(body), SHUTTING_DOWN)
    t.ok(res.closed, 'the connection was closed after the 503')
    t.equal(connections, 0, 'no connection opened')
    // The stubborn client is cut off after the grace period; close() then settles.
    const settled = await Promise.race([closed.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 8000))])
    t.equal(settled, true, 'close() settled')
    stubborn.destroy()
  })
}

t.test('an upgrade that arrives after close() was called, while a slow preClose hook registered before the gate runs, gets the gate\'s 503 with Retry-After, not Fastify\'s bare one', async (t) => {
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  let preClose = 0
  // A preClose hook that runs before any of the gate's: registered first.
  const app = Fastify()
  app.addHook('preClose', async () => { preClose++; await held })
  await app.register(fastifyWsGate)
  app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const closed = app.close()
  t.ok(await eventually(() => preClose === 1, 2000))
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  const res = await collect(socket, upgradeRequest('/ws'), 2000)
  release()
  await closed
  const { statusLine, headerLines, body } = parseRaw(res.text)
  t.equal(statusLine, 'HTTP/1.1 503 Service Unavailable')
  t.ok(headerLines.includes('Retry-After: 5'))
  t.strictSame(JSON.parse(body), SHUTTING_DOWN)
  t.ok(res.closed)
})

t.test('a client ws\'s verifyClient lets in only after close() was called gets the gate\'s 503, not a 101', async (t) => {
  let verifying: (() => void) | undefined
  let connections = 0
  const { app, port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => { connections++ })
  }, {
    websocket: {
      options: {
        verifyClient: (_info: unknown, done: (verified: boolean) => void) => { verifying = () => { done(true) } }
      }
    }
  })
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  const answer = collect(socket, upgradeRequest('/ws'), 3000)
  t.ok(await eventually(() => verifying !== undefined, 2000), 'ws is verifying the client')
  const closed = app.close()
  ;(verifying as () => void)()
  const { statusLine, headerLines, body } = parseRaw((await answer).text)
  t.equal(statusLine, 'HTTP/1.1 503 Service Unavailable')
  t.ok(headerLines.includes('Retry-After: 5'))
  t.strictSame(JSON.parse(body), SHUTTING_DOWN)
  t.equal(connections, 0)
  await closed
})
