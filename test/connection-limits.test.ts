// Connection limits on routes, with the in-process store: the cap, its 429,
// the release on close however the connection closes, every kind of route
// (handshake, none, asgi(), HTTP/2), and the options.
import { once } from 'node:events'
import diagnostics from 'node:diagnostics_channel'
import Fastify from 'fastify'
import t from 'tap'
import fastifyWsGate, { accept, asgi, errors, HANDSHAKE_CHANNEL, memoryLimitStore, reject, type HandshakeEvent } from '../lib/index.js'
import { connectWs, denied, eventually, logsAbove, opened, start } from './helpers.js'
import { h2connect, h2session } from './h2-helpers.js'

const user = (request: { headers: Record<string, unknown> }): string | undefined => typeof request.headers['x-user'] === 'string' ? `user:${request.headers['x-user']}` : undefined

t.test('at most max open WebSockets per key: the next one gets 429 with Retry-After; a closed one frees its place', async (t) => {
  const events: HandshakeEvent[] = []
  const listen = (event: unknown): void => { events.push(event as HandshakeEvent) }
  diagnostics.subscribe(HANDSHAKE_CHANNEL, listen)
  t.teardown(() => { diagnostics.unsubscribe(HANDSHAKE_CHANNEL, listen) })
  const { port, app } = await start(t, (app) => {
    app.get('/rooms', {
      websocket: true,
      handshake: (request) => request.headers['x-user'] !== undefined ? accept() : reject(401),
      connectionLimit: { key: user, max: 2 }
    }, (socket) => { socket.send('in') })
  })
  const a = opened(await connectWs(port, '/rooms', { headers: { 'x-user': 'ann' } }))
  const b = opened(await connectWs(port, '/rooms', { headers: { 'x-user': 'ann' } }))
  t.equal(app.wsGate.leases, 2)
  const over = denied(await connectWs(port, '/rooms', { headers: { 'x-user': 'ann' } }))
  t.equal(over.statusCode, 429)
  t.equal(over.headers['retry-after'], '5')
  t.same(JSON.parse(over.body), { statusCode: 429, code: 'FST_WS_GATE_CONNECTION_LIMIT', error: 'Too Many Requests', message: 'Too many open connections; try again later' })
  const other = opened(await connectWs(port, '/rooms', { headers: { 'x-user': 'bob' } }))
  t.equal(await other.first, 'in', 'another key has its own count')
  a.ws.close()
  await once(a.ws, 'close')
  t.ok(await eventually(() => app.wsGate.leases === 2))
  const again = opened(await connectWs(port, '/rooms', { headers: { 'x-user': 'ann' } }))
  t.equal(await again.first, 'in')
  b.ws.terminate()
  t.ok(await eventually(() => app.wsGate.leases === 2), 'a connection cut without a close frame frees its place too')
  t.same(events.filter((event) => event.outcome === 'limited').map(({ status, route }) => [status, route]), [[429, '/rooms']])
  other.ws.close()
  again.ws.close()
})

t.test('a key that returns undefined skips its limit; several limits are taken together or not at all', async (t) => {
  const { port, app } = await start(t, (app) => {
    app.get('/ws', {
      websocket: true,
      handshake: () => accept(),
      connectionLimit: [{ key: user, max: 5 }, { key: (request) => request.headers['x-room'] as string | undefined, max: 1 }]
    }, () => {})
  })
  const anonymous = opened(await connectWs(port, '/ws'))
  const first = opened(await connectWs(port, '/ws', { headers: { 'x-user': 'cy', 'x-room': 'r1' } }))
  t.equal(app.wsGate.leases, 1, 'a connection whose every key was skipped holds no lease')
  const full = denied(await connectWs(port, '/ws', { headers: { 'x-user': 'cy', 'x-room': 'r1' } }))
  t.equal(full.statusCode, 429)
  // The room is full, so the user's place was not taken either: four more fit.
  const more = await Promise.all([1, 2, 3, 4].map((i) => connectWs(port, '/ws', { headers: { 'x-user': 'cy', 'x-room': `other${i}` } })))
  t.same(more.map((outcome) => outcome.accepted), [true, true, true, true])
  for (const outcome of [anonymous, first, ...more.map(opened)]) outcome.ws.close()
  t.ok(await eventually(() => app.wsGate.leases === 0))
})

t.test('routes without a handshake, asgi() routes, rejectVia close-frame and HTTP/2 take the same limits', async (t) => {
  const { port, app } = await start(t, (app) => {
    app.get('/plain', { websocket: true, connectionLimit: { key: () => 'plain', max: 1 } }, (socket) => { socket.send(socket.protocol) })
    app.get('/frame', { websocket: true, rejectVia: 'close-frame', handshake: () => accept(), connectionLimit: { key: () => 'frame', max: 0 } }, () => {})
    app.get('/asgi', {
      ...asgi(async (_scope, receive, send) => {
        await receive()
        await send({ type: 'websocket.accept' })
        const message = await receive()
        if (message.type === 'websocket.disconnect') asgiDisconnects++
      }),
      connectionLimit: { key: () => 'asgi', max: 1 }
    })
  }, {}, { http2: true } as never)
  let asgiDisconnects = 0
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const plain = await h2connect(session, '/plain', { protocols: ['p1', 'p2'] })
  t.equal(plain.status, 200)
  t.equal(plain.headers['sec-websocket-protocol'], 'p1', 'ws\'s rule chooses the subprotocol of a route without a decision')
  const plainFull = await h2connect(session, '/plain')
  t.equal(plainFull.status, 429)
  const frame = await h2connect(session, '/frame')
  t.equal(frame.status, 200)
  const [code] = await once(frame.ws!, 'close') as [number]
  t.equal(code, 4429)
  const asgiOpen = await h2connect(session, '/asgi')
  t.equal(asgiOpen.status, 200)
  const asgiFull = await h2connect(session, '/asgi')
  t.equal(asgiFull.status, 429)
  t.ok(await eventually(() => asgiDisconnects === 1), 'the ASGI application that accepted over the limit hears websocket.disconnect')
  t.equal(app.wsGate.leases, 2)
  plain.ws!.close()
  asgiOpen.ws!.close()
  t.ok(await eventually(() => app.wsGate.leases === 0))
})

t.test('a lease taken by an accept that never opens is released: verifyClient refused it', async (t) => {
  const { port, app } = await start(t, (app) => {
    app.get('/v', { websocket: true, handshake: () => accept(), connectionLimit: { key: () => 'v', max: 1 } }, () => {})
  }, { websocket: { options: { verifyClient: () => false } } })
  t.equal(denied(await connectWs(port, '/v')).statusCode, 401)
  t.equal(denied(await connectWs(port, '/v')).statusCode, 401, 'not 429: the first refusal released its place')
  t.equal(app.wsGate.leases, 0)
})

t.test('a key function that throws or returns a non-string is a 500, logged', async (t) => {
  const { port, logs } = await start(t, (app) => {
    app.get('/throws', { websocket: true, handshake: () => accept(), connectionLimit: { key: () => { throw new Error('no user') }, max: 1 } }, () => {})
    app.get('/number', { websocket: true, handshake: () => accept(), connectionLimit: { key: () => 42 as unknown as string, max: 1 } }, () => {})
  })
  t.equal(denied(await connectWs(port, '/throws')).statusCode, 500)
  t.equal(denied(await connectWs(port, '/number')).statusCode, 500)
  t.same(logsAbove(logs, 40).map((line) => (line.err as { message: string }).message), ['no user', 'a connectionLimit key must return a string or undefined, got number'])
})

t.test('app.close() releases this node\'s leases in a store it was given, and leaves the store open', async (t) => {
  const store = memoryLimitStore()
  const app = Fastify()
  await app.register(fastifyWsGate, { connectionLimits: { store, leaseTtl: 60_000, retryAfter: 30 } })
  app.get('/ws', { websocket: true, connectionLimit: { key: () => 'k', max: 1 } }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const open = opened(await connectWs(port, '/ws'))
  const full = denied(await connectWs(port, '/ws'))
  t.equal(full.headers['retry-after'], '30')
  const closing = once(open.ws, 'close')
  await app.close()
  await closing
  t.same(await store.acquire([{ key: '/ws k', max: 1 }], 'someone-else', 1000), { ok: true }, 'the place (the key under its route) is free in the store, which still answers')
})

t.test('options are checked at startup', async (t) => {
  const cases: Array<[object, string]> = [
    [{ connectionLimits: 'redis' }, 'must be an object'],
    [{ connectionLimits: { store: {} } }, 'must be a connection limit store'],
    [{ connectionLimits: { retryAfter: -1 } }, 'must be a whole number of seconds'],
    [{ connectionLimits: { leaseTtl: 1 } }, 'must be an integer number of milliseconds'],
    [{ connectionLimits: { onStoreError: 'maybe' } }, "must be 'deny' or 'allow'"]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    const err = await app.register(fastifyWsGate, options as never).ready().then(() => null, (err: Error) => err)
    t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_INVALID_OPTION', JSON.stringify(options))
    t.match(err?.message, message)
    await app.close()
  }
  const routes: Array<[object, string]> = [
    [{ websocket: true, connectionLimit: [] }, 'must hold at least one limit'],
    [{ websocket: true, connectionLimit: { max: 1 } }, 'each limit needs a key function'],
    [{ websocket: true, connectionLimit: { key: () => 'k', max: 1.5 } }, 'max must be a whole number'],
    [{ websocket: true, connectionLimit: [null] }, 'each limit needs a key function'],
    [{ websocket: true, connectionLimit: { key: () => 'k', max: 1, shared: 'yes' } }, 'shared must be a boolean'],
    [{ connectionLimit: { key: () => 'k', max: 1 } }, 'needs websocket: true']
  ]
  for (const [route, message] of routes) {
    const app = Fastify()
    await app.register(fastifyWsGate)
    const err = await Promise.resolve().then(() => app.get('/x', route as never, () => {})).then(() => app.ready()).then(() => null, (err: Error) => err)
    t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_INVALID_ROUTE_OPTION', JSON.stringify(route))
    t.match(err?.message, message)
    await app.close()
  }
})

t.test('a lease this node can no longer prove (its refreshes fail) closes its connection with 1013; the failures are logged', async (t) => {
  const store = memoryLimitStore()
  const flaky = {
    acquire: store.acquire.bind(store),
    release: store.release.bind(store),
    refresh: async () => { throw new errors.FST_WS_GATE_LIMIT_STORE_UNAVAILABLE('refresh: connection lost') },
    close: store.close.bind(store)
  }
  const { port, app, logs } = await start(t, (app) => {
    app.get('/ws', { websocket: true, connectionLimit: { key: () => 'k', max: 1 } }, () => {})
  }, { connectionLimits: { store: flaky, leaseTtl: 300 } })
  const open = opened(await connectWs(port, '/ws'))
  const [code, reason] = await once(open.ws, 'close') as [number, Buffer]
  t.equal(code, 1013)
  t.equal(String(reason), 'Connection limit could not be confirmed')
  t.ok(await eventually(() => app.wsGate.leases === 0))
  t.same(logsAbove(logs, 30).map((line) => line.msg).filter((msg, i, all) => all.indexOf(msg) === i).sort(), [
    'connection closed: its connection limit lease could not be confirmed',
    'connection limit store failure'
  ])
})

t.test('an asgi() application whose accept waited for its limits, then was refused by verifyClient, hears websocket.disconnect', async (t) => {
  let heard: string | undefined
  const { port, app } = await start(t, (app) => {
    app.get('/asgi', {
      ...asgi(async (_scope, receive, send) => {
        await receive()
        await send({ type: 'websocket.accept' })
        heard = (await receive()).type
      }),
      connectionLimit: { key: () => 'a', max: 1 }
    })
  }, { websocket: { options: { verifyClient: () => false } } })
  t.equal(denied(await connectWs(port, '/asgi')).statusCode, 401)
  t.ok(await eventually(() => heard === 'websocket.disconnect'))
  t.equal(app.wsGate.leases, 0)
})

t.test('an app without connection limits counts no leases', async (t) => {
  const { app } = await start(t, (app) => { app.get('/ws', { websocket: true }, () => {}) })
  t.equal(app.wsGate.leases, 0)
})

t.test('a key counts for its route only, unless its limit is shared: then every route that shares it counts together', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/a', { websocket: true, connectionLimit: { key: () => 'user:1', max: 1 } }, () => {})
    app.get('/b', { websocket: true, connectionLimit: { key: () => 'user:1', max: 1 } }, () => {})
    app.get('/c', { websocket: true, connectionLimit: { key: () => 'user:1', max: 1, shared: true } }, () => {})
    app.get('/d', { websocket: true, connectionLimit: { key: () => 'user:1', max: 1, shared: true } }, () => {})
  })
  const a = opened(await connectWs(port, '/a'))
  const b = opened(await connectWs(port, '/b'))
  t.equal(denied(await connectWs(port, '/a')).statusCode, 429, 'route /a counts its own')
  const c = opened(await connectWs(port, '/c'))
  t.equal(denied(await connectWs(port, '/d')).statusCode, 429, '/c and /d share user:1')
  for (const outcome of [a, b, c]) outcome.ws.close()
})
