// app.wsGate.pending (what maxPendingHandshakes bounds) counts an upgrade from
// the gate's checks until its answer starts. An upgrade whose socket closes
// first must leave the count too, wherever it is waiting: in an async hook, in
// a pending handshake handler, in ws's own verifyClient after an accept or a
// close-frame refusal, or in the app's error handler after the handler failed.
// And an accepted connection carries no listener of the gate's.
import diagnostics from 'node:diagnostics_channel'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import fastifyWebsocket from '@fastify/websocket'
import Fastify, { type FastifyRequest } from 'fastify'
import t from 'tap'
import type { WebSocket } from 'ws'
import fastifyWsGate, { accept, HANDSHAKE_CHANNEL, reject, type HandshakeEvent } from '../lib/index.js'
import { connectWs, eventually, opened, parseRaw, rawExchange, start, upgradeRequest } from './helpers.js'

function subscribe (t: tap.Test): HandshakeEvent[] {
  const events: HandshakeEvent[] = []
  const listen = (message: unknown): void => { events.push(message as HandshakeEvent) }
  diagnostics.subscribe(HANDSHAKE_CHANNEL, listen)
  t.teardown(() => { diagnostics.unsubscribe(HANDSHAKE_CHANNEL, listen) })
  return events
}

async function send (port: number, path: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(upgradeRequest(path))
  return socket
}

t.test('a client that leaves during an async hook leaves the count', async (t) => {
  const events = subscribe(t)
  let inHook = 0
  const { app, port } = await start(t, (app) => {
    app.addHook('onRequest', (request) => {
      inHook++
      // Nobody reads an upgrade's socket while it is in hooks; this hook
      // watches, so that the client's leaving closes the socket.
      const socket = request.raw.socket
      socket.once('end', () => socket.destroy())
      socket.resume()
      return new Promise<void>(() => {})
    })
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  })
  const socket = await send(port, '/ws')
  t.ok(await eventually(() => inHook === 1, 2000), 'in the hook')
  t.equal(app.wsGate.pending, 1)
  socket.destroy()
  t.ok(await eventually(() => app.wsGate.pending === 0, 2000), 'released when the client left')
  t.strictSame(events.map(({ outcome, route, status }) => ({ outcome, route, status })), [{ outcome: 'aborted', route: null, status: null }])
})

t.test('a client that leaves while the handshake handler is pending leaves the count', async (t) => {
  const events = subscribe(t)
  let pending = 0
  const { app, port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => { pending++; return new Promise(() => {}) } }, () => {})
  }, { handshakeTimeout: 0 })
  const socket = await send(port, '/ws')
  t.ok(await eventually(() => pending === 1, 2000), 'the handler is pending')
  t.equal(app.wsGate.pending, 1)
  socket.destroy()
  t.ok(await eventually(() => app.wsGate.pending === 0, 2000), 'released when the client left')
  t.strictSame(events.map(({ outcome, route, status }) => ({ outcome, route, status })), [{ outcome: 'aborted', route: '/ws', status: null }])
})

for (const rejectVia of [undefined, 'close-frame'] as const) {
  const what = rejectVia === undefined ? 'an accept' : 'a close-frame refusal'
  t.test(`ws's verifyClient turning the client away after ${what}: the count is released, and ws's 403 goes out`, async (t) => {
    let verified = 0
    let connections = 0
    const { app, port } = await start(t, (app) => {
      app.get('/ws', { websocket: true, handshake: async () => rejectVia === undefined ? accept() : reject(401) }, () => { connections++ })
    }, {
      rejectVia,
      websocket: {
        options: {
          verifyClient: (_info: unknown, done: (verified: boolean, code: number) => void) => {
            verified++
            setTimeout(() => { done(false, 403) }, 10)
          }
        }
      }
    })
    const res = await rawExchange(port, upgradeRequest('/ws'))
    t.equal(parseRaw(res.text).statusLine, 'HTTP/1.1 403 Forbidden')
    t.equal(verified, 1)
    t.ok(await eventually(() => app.wsGate.pending === 0, 2000), 'released when ws closed the socket')
    t.equal(connections, 0)
  })
}

// The 'close' listeners on an upgrade's socket while ws verifies the client,
// with or without an async hook before: the gate listens once either way.
async function listenersWhileVerifying (t: tap.Test, asyncHook: boolean): Promise<number> {
  let count = -1
  const { app, port } = await start(t, (app) => {
    if (asyncHook) app.addHook('onRequest', async () => { await new Promise((resolve) => setTimeout(resolve, 10)) })
    app.get('/ws', { websocket: true, handshake: async () => accept() }, () => {})
  }, {
    websocket: {
      options: {
        verifyClient: (info: { req: import('node:http').IncomingMessage }, done: (verified: boolean, code: number) => void) => {
          // Read once the gate has handed the upgrade to ws (it listens after ws takes it).
          setTimeout(() => {
            count = info.req.socket.listenerCount('close')
            done(false, 403)
          }, 10)
        }
      }
    }
  })
  t.equal(parseRaw((await rawExchange(port, upgradeRequest('/ws'))).text).statusLine, 'HTTP/1.1 403 Forbidden')
  t.ok(await eventually(() => app.wsGate.pending === 0, 2000))
  return count
}

t.test('an upgrade handed on twice (async hooks, then ws verifying the client) gets one listener of the gate\'s', async (t) => {
  const once = await listenersWhileVerifying(t, false)
  const twice = await listenersWhileVerifying(t, true)
  t.ok(once > 0, 'the gate listens while ws verifies')
  t.equal(twice, once, 'handed on twice, the socket has as many listeners as handed on once')
})

t.test('an error handler that takes the connection over and closes it: the count is released', async (t) => {
  const events = subscribe(t)
  let handled = 0
  const { app, port } = await start(t, (app) => {
    app.setErrorHandler((_err, request, reply) => {
      handled++
      reply.hijack()
      request.raw.socket.destroy()
    })
    app.get('/ws', { websocket: true, handshake: async () => { throw new Error('upstream down') } }, () => {})
  })
  const res = await rawExchange(port, upgradeRequest('/ws'))
  t.equal(res.text, '', 'nothing was written')
  t.equal(handled, 1)
  t.ok(await eventually(() => app.wsGate.pending === 0, 2000), 'released when the socket closed')
  t.strictSame(events.map(({ outcome, route, status }) => ({ outcome, route, status })), [{ outcome: 'error', route: '/ws', status: null }])
})

// The server side of one accepted connection: the 'close' listeners on its socket.
async function closeListeners (app: ReturnType<typeof Fastify>, register: () => Promise<void>): Promise<number> {
  let socketOf: ((request: FastifyRequest) => void) | undefined
  const counted = new Promise<number>((resolve) => {
    socketOf = (request) => { resolve(request.raw.socket.listenerCount('close')) }
  })
  await register()
  app.get('/ws', { websocket: true }, (_ws: WebSocket, request: FastifyRequest) => { (socketOf as (request: FastifyRequest) => void)(request) })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const client = opened(await connectWs(port, '/ws'))
  const count = await counted
  client.ws.close()
  await app.close()
  return count
}

t.test('an accepted connection\'s socket has the same \'close\' listeners as under @fastify/websocket alone', async (t) => {
  const alone = Fastify()
  const gated = Fastify()
  const expected = await closeListeners(alone, async () => { await alone.register(fastifyWebsocket) })
  const actual = await closeListeners(gated, async () => { await gated.register(fastifyWsGate) })
  t.equal(actual, expected, `${expected} 'close' listener(s) in both`)
  t.ok(expected > 0, 'ws listens for close')
})
