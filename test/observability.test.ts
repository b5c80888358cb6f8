// node:diagnostics_channel: every handshake outcome is published on
// `fastify-ws-gate:handshake`, and nothing at all while nobody subscribes.
import diagnostics from 'node:diagnostics_channel'
import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { accept, HANDSHAKE_CHANNEL, reject, type HandshakeEvent } from '../lib/index.js'
import { eventually, rawExchange, start, upgradeRequest, wait } from './helpers.js'

t.test('each outcome, with its route, status and duration', async (t) => {
  const events: HandshakeEvent[] = []
  const listen = (message: unknown): void => { events.push(message as HandshakeEvent) }
  diagnostics.subscribe(HANDSHAKE_CHANNEL, listen)
  t.teardown(() => { diagnostics.unsubscribe(HANDSHAKE_CHANNEL, listen) })
  const release: Array<() => void> = []
  const { port } = await start(t, (app) => {
    app.get('/rooms/:room', {
      websocket: true,
      handshake: async (request) => {
        const room = (request.params as { room: string }).room
        if (room === 'ok') return accept()
        if (room === 'no') return reject(401, 'nope')
        if (room === 'boom') throw new Error('boom')
        if (room === 'bad') return reject(700)
        if (room === 'slow') return new Promise(() => {})
        return new Promise((resolve) => release.push(() => resolve(reject(409))))
      }
    }, (socket) => { socket.close() })
  }, { handshakeTimeout: 50, maxPendingHandshakes: 1 })
  for (const room of ['ok', 'no', 'boom', 'bad', 'slow']) await rawExchange(port, upgradeRequest(`/rooms/${room}?x=1`), 500)
  // A client that leaves while pending, and one shed while it is.
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(upgradeRequest('/rooms/hold'))
  await eventually(() => release.length === 1, 2000)
  await rawExchange(port, upgradeRequest('/rooms/extra'))
  socket.destroy()
  await eventually(() => events.length === 7, 2000)
  t.strictSame(events.map(({ outcome, route, url, status }) => ({ outcome, route, url, status })), [
    { outcome: 'accepted', route: '/rooms/:room', url: '/rooms/ok?x=1', status: 101 },
    { outcome: 'rejected', route: '/rooms/:room', url: '/rooms/no?x=1', status: 401 },
    { outcome: 'error', route: '/rooms/:room', url: '/rooms/boom?x=1', status: null },
    { outcome: 'error', route: '/rooms/:room', url: '/rooms/bad?x=1', status: 500 },
    { outcome: 'timeout', route: '/rooms/:room', url: '/rooms/slow?x=1', status: 503 },
    { outcome: 'shed', route: null, url: '/rooms/extra', status: 503 },
    { outcome: 'aborted', route: '/rooms/:room', url: '/rooms/hold', status: null }
  ])
  t.ok(events.every((event) => typeof event.duration === 'number' && event.duration >= 0))
  t.ok((events[4].duration) >= 45, `the timeout came after about 50 ms (${events[4].duration.toFixed(1)} ms)`)
})

t.test('nothing is published while nobody subscribes', async (t) => {
  const channel = diagnostics.channel(HANDSHAKE_CHANNEL)
  t.equal(channel.hasSubscribers, false)
  const published: unknown[] = []
  const original = channel.publish.bind(channel)
  channel.publish = (message: unknown) => { published.push(message); original(message) }
  // An own property over the prototype's publish; deleting it restores the
  // channel's own (which changes when it gains subscribers).
  t.teardown(() => { delete (channel as { publish?: unknown }).publish })
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => reject(401) }, () => {})
  }, { maxPendingHandshakes: 1 })
  await rawExchange(port, upgradeRequest('/ws'))
  await wait(20)
  t.strictSame(published, [])
})

t.test('outcomes outside the handshake handler: malformed, hooks, the router, origins, plain routes, a client gone in a hook', async (t) => {
  const events: HandshakeEvent[] = []
  const listen = (message: unknown): void => { events.push(message as HandshakeEvent) }
  diagnostics.subscribe(HANDSHAKE_CHANNEL, listen)
  t.teardown(() => { diagnostics.unsubscribe(HANDSHAKE_CHANNEL, listen) })
  let inHook = 0
  const { port } = await start(t, (app) => {
    app.addHook('onRequest', async (request, reply) => {
      if (request.url === '/private') await reply.code(401).send('no')
      if (request.url === '/hold') {
        inHook++
        // Nobody reads an upgrade's socket while it is in hooks, so a client
        // that leaves goes unnoticed there; a hook that watches notices.
        const socket = request.raw.socket
        socket.once('end', () => socket.destroy())
        socket.resume()
        await new Promise(() => {})
      }
    })
    app.get('/private', { websocket: true, handshake: () => accept() }, () => {})
    app.get('/hold', { websocket: true, handshake: () => accept() }, () => {})
    app.get('/guarded', { websocket: true, allowedOrigins: ['https://good.example'] }, () => {})
    app.get('/plain-ws', { websocket: true }, (socket) => { socket.close() })
    app.get('/http', () => 'hi')
  })
  await rawExchange(port, upgradeRequest('/private'), 500)
  await rawExchange(port, upgradeRequest('/guarded', { Origin: 'https://evil.example' }), 500)
  await rawExchange(port, upgradeRequest('/plain-ws'), 500)
  await rawExchange(port, upgradeRequest('/http'), 500)
  await rawExchange(port, upgradeRequest('/nowhere'), 500)
  await rawExchange(port, upgradeRequest('/private', { 'Sec-WebSocket-Version': '8' }), 500)
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(upgradeRequest('/hold'))
  await eventually(() => inHook === 1, 2000)
  socket.destroy()
  await eventually(() => events.length === 7, 2000)
  t.strictSame(events.map(({ outcome, route, url, status }) => ({ outcome, route, url, status })), [
    { outcome: 'rejected', route: '/private', url: '/private', status: 401 },
    { outcome: 'rejected', route: '/guarded', url: '/guarded', status: 403 },
    { outcome: 'accepted', route: '/plain-ws', url: '/plain-ws', status: 101 },
    { outcome: 'rejected', route: '/http', url: '/http', status: 400 },
    { outcome: 'rejected', route: null, url: '/nowhere', status: 404 },
    { outcome: 'rejected', route: null, url: '/private', status: 426 },
    { outcome: 'aborted', route: null, url: '/hold', status: null }
  ])
})
