// Hardening, point by point: load shedding (maxPendingHandshakes), cross-site
// WebSocket hijacking protection (allowedOrigins), graceful shutdown, and the
// limits on denials (body size, time to go out).
import { once } from 'node:events'
import { connect, type AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import Fastify from 'fastify'
import t from 'tap'
import fastifyWsGate, { accept, reject, type HandshakeDecision } from '../lib/index.js'
import { collect, connectWs, denied, eventually, opened, parseRaw, rawExchange, start, upgradeAndWait, upgradeRequest, wait } from './helpers.js'

// A client that reads the response head, then stops reading for 400 ms, then
// reads on until the server closes: how many bytes it got in all.
async function stopReading (port: number, path: string): Promise<number> {
  const { socket, first } = await upgradeAndWait(port, path)
  socket.pause()
  await wait(400)
  let received = first.length
  socket.on('data', (chunk: Buffer) => { received += chunk.length })
  socket.on('error', () => {})
  const gone = once(socket, 'close')
  socket.resume()
  await gone
  return received
}

t.test('maxPendingHandshakes: the excess is shed with 503 at once, counted, and no handler runs for it', async (t) => {
  const release: Array<(decision: HandshakeDecision) => void> = []
  let calls = 0
  const { app, port } = await start(t, (app) => {
    app.get('/slow', {
      websocket: true,
      handshake: () => { calls++; return new Promise((resolve) => release.push(resolve)) }
    }, () => {})
  }, { maxPendingHandshakes: 5 })
  const sockets = []
  for (let i = 0; i < 5; i++) {
    const socket = connect(port, '127.0.0.1')
    await once(socket, 'connect')
    socket.write(upgradeRequest('/slow'))
    sockets.push(socket)
  }
  t.ok(await eventually(() => app.wsGate.pending === 5, 2000), 'five pending')
  const shed = []
  for (let i = 0; i < 3; i++) shed.push(parseRaw((await rawExchange(port, upgradeRequest('/slow'))).text))
  t.strictSame(shed.map((res) => res.statusLine), Array(3).fill('HTTP/1.1 503 Service Unavailable'))
  t.ok(shed[0].headerLines.includes('Retry-After: 5'))
  t.equal(shed[0].body, JSON.stringify({
    statusCode: 503,
    code: 'FST_WS_GATE_OVERLOADED',
    error: 'Service Unavailable',
    message: 'Too many handshakes are pending (maxPendingHandshakes is 5); try again later'
  }))
  t.equal(app.wsGate.shed, 3)
  t.equal(calls, 5, 'no handler ran for the shed upgrades')
  for (const resolve of release) resolve(reject(409))
  t.ok(await eventually(() => app.wsGate.pending === 0, 2000), 'settled handshakes leave the count')
  const after = parseRaw((await rawExchange(port, upgradeRequest('/slow'))).text)
  t.equal(after.statusLine, '', 'a new one is admitted again (and stays pending)')
  t.equal(calls, 6)
  for (const socket of sockets) socket.destroy()
  for (const resolve of release.slice(5)) resolve(reject(409))
})

t.test('allowedOrigins: a list, per route overrides, a predicate, and no Origin at all', async (t) => {
  const { port, logs } = await start(t, (app) => {
    app.get('/list', { websocket: true, handshake: () => accept() }, () => {})
    app.get('/open', { websocket: true, allowedOrigins: '*' }, () => {})
    app.get('/fn', { websocket: true, allowedOrigins: (origin) => origin.endsWith('.example.com') }, () => {})
    app.get('/broken', { websocket: true, allowedOrigins: () => { throw new Error('predicate bug') } }, () => {})
  }, { allowedOrigins: ['https://app.example.com'] })
  const cases: Array<[string, string | undefined, number]> = [
    ['/list', 'https://app.example.com', 101],
    ['/list', 'HTTPS://APP.EXAMPLE.COM', 101],
    ['/list', 'https://evil.example.net', 403],
    ['/list', 'null', 403],
    ['/list', undefined, 101],
    ['/open', 'https://evil.example.net', 101],
    ['/fn', 'https://chat.example.com', 101],
    ['/fn', 'https://example.com.evil.net', 403],
    ['/broken', 'https://app.example.com', 403]
  ]
  for (const [path, origin, status] of cases) {
    const res = parseRaw((await rawExchange(port, upgradeRequest(path, { Origin: origin ?? null }), 300)).text)
    t.match(res.statusLine, new RegExp(`^HTTP/1\\.1 ${status} `), `${path} ${origin}`)
    if (status === 403) {
      t.equal(res.body, JSON.stringify({ statusCode: 403, code: 'FST_WS_GATE_ORIGIN_NOT_ALLOWED', error: 'Forbidden', message: `Origin ${JSON.stringify(origin)} is not allowed` }))
    }
  }
  t.equal(logs.filter((line) => line.level === 50 && line.msg === 'allowedOrigins predicate threw; origin refused').length, 1)
})

t.test('allowedOrigins is checked before the handshake handler, after the hooks', async (t) => {
  const order: string[] = []
  const { port } = await start(t, (app) => {
    app.addHook('onRequest', async () => { order.push('hook') })
    app.get('/ws', { websocket: true, handshake: () => { order.push('handshake'); return accept() } }, () => {})
  }, { allowedOrigins: ['https://a.example'] })
  await rawExchange(port, upgradeRequest('/ws', { Origin: 'https://b.example' }))
  t.strictSame(order, ['hook'])
})

t.test('invalid allowedOrigins fail at registration', async (t) => {
  for (const value of ['https://a.example', ['https://a.example/path'], [42], {}]) {
    const app = Fastify()
    const err = await app.register(fastifyWsGate, { allowedOrigins: value as never }).ready().then(() => null, (err: Error) => err)
    t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_INVALID_OPTION', JSON.stringify(value))
    t.match(err?.message, /^Invalid fastify-ws-gate option allowedOrigins: must be '\*', a list of origins/)
    await app.close()
  }
  const app = Fastify()
  await app.register(fastifyWsGate)
  const routeErrors = []
  for (const options of [{ websocket: true, allowedOrigins: 'x' }, { allowedOrigins: ['https://a.example'] }]) {
    try {
      app.get(`/r${routeErrors.length}`, options as never, async () => 'x')
    } catch (err) {
      routeErrors.push((err as Error).message)
    }
  }
  t.match(routeErrors[0], /^Invalid option allowedOrigins on route GET \/r0: must be '\*'/)
  t.equal(routeErrors[1], 'Invalid option allowedOrigins on route GET /r1: needs websocket: true')
  await app.close()
})

t.test('other plugin options are checked', async (t) => {
  for (const [name, value, message] of [
    ['maxPendingHandshakes', 0, /must be an integer number of handshakes from 1/],
    ['denialMaxBodySize', -1, /must be an integer number of bytes from 0/],
    ['denialTimeout', 1.5, /must be an integer number of milliseconds from 0/]
  ] as const) {
    const app = Fastify()
    const err = await app.register(fastifyWsGate, { [name]: value }).ready().then(() => null, (err: Error) => err)
    t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_INVALID_OPTION')
    t.match(err?.message, message)
    await app.close()
  }
})

t.test('graceful shutdown: pending handshakes get 503, accepted connections 1001, and close waits for them', async (t) => {
  let signal: AbortSignal | undefined
  const app = Fastify()
  await app.register(fastifyWsGate)
  app.get('/pending', { websocket: true, handshake: (_request, ctx) => { signal = ctx.signal; return new Promise(() => {}) } }, () => {})
  app.get('/open', { websocket: true }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const ws = opened(await connectWs(port, '/open')).ws
  const wsClosed = new Promise<[number, string]>((resolve) => ws.once('close', (code, reason) => resolve([code, String(reason)])))
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(upgradeRequest('/pending'))
  t.ok(await eventually(() => signal !== undefined, 2000))
  const answer = new Promise<string>((resolve) => {
    let text = ''
    socket.on('data', (chunk) => { text += chunk })
    socket.on('close', () => resolve(text))
  })
  let closed = false
  const closing = app.close().then(() => { closed = true })
  const res = parseRaw(await answer)
  t.equal(res.statusLine, 'HTTP/1.1 503 Service Unavailable')
  t.ok(res.headerLines.includes('Retry-After: 5'))
  t.equal(JSON.parse(res.body).code, 'FST_WS_GATE_SHUTTING_DOWN')
  t.equal((signal?.reason as { code: string }).code, 'FST_WS_GATE_SHUTTING_DOWN')
  t.strictSame(await wsClosed, [1001, 'Server shutting down'])
  await closing
  t.equal(closed, true)
  t.equal(app.server.listening, false)
})

t.test('shutdown answers every pending handshake, however the others settled before it', async (t) => {
  // Five pending handshakes; the second and fourth to arrive settle first (one
  // accepted, one rejected), the other three are still pending at close().
  const decide = new Map<string, (decision: HandshakeDecision) => void>()
  const { app, port } = await start(t, (app) => {
    app.get('/hold/:id', {
      websocket: true,
      handshake: (request) => new Promise<HandshakeDecision>((resolve) => { decide.set((request.params as { id: string }).id, resolve) })
    }, (socket) => { socket.close() })
  }, { handshakeTimeout: 0 })
  const answers = ['1', '2', '3', '4', '5'].map((id) => rawExchange(port, upgradeRequest(`/hold/${id}`), 5000))
  t.ok(await eventually(() => decide.size === 5, 2000), 'five pending')
  ;(decide.get('2') as (decision: HandshakeDecision) => void)(accept())
  ;(decide.get('4') as (decision: HandshakeDecision) => void)(reject(401))
  t.ok(await eventually(() => app.wsGate.pending === 3, 2000), 'three still pending')
  const closing = app.close()
  const heads = (await Promise.all(answers)).map((res) => parseRaw(res.text).statusLine)
  await closing
  t.strictSame(heads, [
    'HTTP/1.1 503 Service Unavailable', 'HTTP/1.1 101 Switching Protocols', 'HTTP/1.1 503 Service Unavailable',
    'HTTP/1.1 401 Unauthorized', 'HTTP/1.1 503 Service Unavailable'
  ])
})

t.test('a connection listener that throws while its 101 goes out: the connection is cut, and shutdown still answers the others', async (t) => {
  let held = false
  const { app, port, logs } = await start(t, (app) => {
    app.get('/slow', { websocket: true, handshake: () => { held = true; return new Promise(() => {}) } }, () => {})
    app.get('/boom', { websocket: true, handshake: () => accept() }, () => {})
    app.websocketServer.on('connection', (_ws: unknown, req: { url: string }) => {
      if (req.url === '/boom') throw new Error('connection listener bug')
    })
  }, { handshakeTimeout: 0 })
  const slow = rawExchange(port, upgradeRequest('/slow'), 5000)
  t.ok(await eventually(() => held, 2000), '/slow is pending')
  const boom = await rawExchange(port, upgradeRequest('/boom'))
  const head = parseRaw(boom.text)
  t.equal(head.statusLine, 'HTTP/1.1 101 Switching Protocols')
  t.equal(head.body, '', 'nothing follows the 101')
  t.equal(boom.closed, true, 'the connection is cut')
  const closing = app.close()
  t.equal(parseRaw((await slow).text).statusLine, 'HTTP/1.1 503 Service Unavailable', 'the other pending handshake is answered at shutdown')
  await closing
  const failure = logs.find((line) => line.msg === 'handshake failed after its answer was written')
  t.equal(failure?.level, 50)
  t.equal((failure?.err as { message?: string } | undefined)?.message, 'connection listener bug')
  t.equal(failure?.state, 'accepted')
})

t.test('upgrades that arrive while the server is closing get 503 too', async (t) => {
  const app = Fastify()
  await app.register(fastifyWsGate)
  app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  app.addHook('preClose', async () => {
    // The server still listens during preClose: a late upgrade comes in now.
    const res = parseRaw((await rawExchange(port, upgradeRequest('/ws'))).text)
    t.equal(res.statusLine, 'HTTP/1.1 503 Service Unavailable')
    t.equal(JSON.parse(res.body).code, 'FST_WS_GATE_SHUTTING_DOWN')
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  await app.close()
})

t.test('a denial body over denialMaxBodySize: 500 for fixed bodies, cut off for streams', async (t) => {
  const { port, logs } = await start(t, (app) => {
    app.get('/fixed', { websocket: true, handshake: () => reject(401, undefined, { body: 'x'.repeat(11) }) }, () => {})
    app.get('/at-limit', { websocket: true, handshake: () => reject(401, undefined, { body: 'x'.repeat(10) }) }, () => {})
    app.get('/stream', { websocket: true, handshake: () => reject(401, undefined, { body: Readable.from(['123456', '789012']) }) }, () => {})
  }, { denialMaxBodySize: 10 })
  const fixed = parseRaw((await rawExchange(port, upgradeRequest('/fixed'))).text)
  t.equal(fixed.statusLine, 'HTTP/1.1 500 Internal Server Error')
  t.equal((logs.find((line) => line.level === 50)?.err as { message: string }).message,
    'Invalid denial body: it has 11 bytes, more than the 10 the denial body limit allows')
  t.equal(parseRaw((await rawExchange(port, upgradeRequest('/at-limit'))).text).body, 'xxxxxxxxxx')
  logs.length = 0
  const stream = await rawExchange(port, upgradeRequest('/stream'))
  t.equal(parseRaw(stream.text).body, '6\r\n123456\r\n', 'the chunk that would pass the limit is not sent')
  t.equal(stream.closed, true)
  t.ok(await eventually(() => logs.some((line) => line.level === 50), 1000))
  t.match((logs.find((line) => line.level === 50)?.err as { message: string }).message, /longer than the 10 bytes the denial body limit allows/)
})

t.test('denialTimeout: a stalled stream, or a client that never reads, cannot hold the socket', async (t) => {
  const stalled = new Readable({ read () {} })
  stalled.push('start')
  const { port } = await start(t, (app) => {
    app.get('/stalled', { websocket: true, handshake: () => reject(503, undefined, { body: stalled }) }, () => {})
    app.get('/big', { websocket: true, handshake: () => reject(413, undefined, { body: Buffer.alloc(32 * 1024 * 1024) }) }, () => {})
  }, { denialTimeout: 200, denialMaxBodySize: 64 * 1024 * 1024 })
  const started = Date.now()
  const res = await rawExchange(port, upgradeRequest('/stalled'), 5000)
  t.equal(res.closed, true, 'the server closed it')
  t.equal(parseRaw(res.text).body, '5\r\nstart\r\n')
  t.ok(Date.now() - started < 4000, 'long before the client gave up')
  t.ok(await eventually(() => stalled.destroyed, 1000), 'the stalled body stream was destroyed')

  const received = await stopReading(port, '/big')
  t.ok(received < 32 * 1024 * 1024, `a client that stopped reading was cut off after ${received} of ${32 * 1024 * 1024} bytes`)
})

t.test('a reply Fastify sends to an upgrade (a hook\'s 401) is bound by denialTimeout too', async (t) => {
  const { port } = await start(t, (app) => {
    app.addHook('onRequest', async (_request, reply) => reply.code(401).send(Buffer.alloc(8 * 1024 * 1024)))
    app.get('/ws', { websocket: true }, () => {})
  }, { denialTimeout: 200 })
  const received = await stopReading(port, '/ws')
  t.ok(received < 8 * 1024 * 1024, `cut off after ${received} bytes`)
})

t.test('maxPendingHandshakes counts upgrades still in async hooks, exactly', async (t) => {
  const release: Array<() => void> = []
  let handlers = 0
  const { app, port } = await start(t, (app) => {
    app.addHook('onRequest', () => new Promise<void>((resolve) => release.push(resolve)))
    app.get('/ws', { websocket: true, handshake: () => { handlers++; return reject(409) } }, () => {})
  }, { maxPendingHandshakes: 5 })
  const answers = Array.from({ length: 8 }, () => rawExchange(port, upgradeRequest('/ws'), 5000))
  t.ok(await eventually(() => app.wsGate.shed === 3, 3000), 'exactly 3 shed')
  t.equal(app.wsGate.pending, 5)
  for (const resolve of release) resolve()
  const statuses = (await Promise.all(answers)).map((res) => parseRaw(res.text).statusLine).sort()
  t.strictSame(statuses, [...Array(5).fill('HTTP/1.1 409 Conflict'), ...Array(3).fill('HTTP/1.1 503 Service Unavailable')])
  t.equal(handlers, 5)
  t.ok(await eventually(() => app.wsGate.pending === 0, 2000), 'all released')
})

t.test('shutdown answers 503 to an upgrade that was still in a hook when close began', async (t) => {
  const app = Fastify()
  await app.register(fastifyWsGate)
  let inHook: (() => void) | undefined
  const reached = new Promise<void>((resolve) => {
    app.addHook('onRequest', () => new Promise<void>((_resolve) => { inHook = _resolve; resolve() }))
  })
  app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const answer = rawExchange(port, upgradeRequest('/ws'), 5000)
  await reached
  const closing = app.close()
  await wait(20)
  ;(inHook as () => void)()
  const res = parseRaw((await answer).text)
  t.equal(res.statusLine, 'HTTP/1.1 503 Service Unavailable')
  t.equal(JSON.parse(res.body).code, 'FST_WS_GATE_SHUTTING_DOWN')
  await closing
})

t.test('close resolves with clientTracking off, once the connections ws kept no list of are gone', async (t) => {
  const app = Fastify()
  await app.register(fastifyWsGate, { websocket: { options: { clientTracking: false } } })
  app.get('/ws', { websocket: true }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const client = opened(await connectWs(port, '/ws'))
  t.equal(app.websocketServer.clients, undefined, 'ws keeps no list: the gate cannot close them')
  const closing = app.close()
  client.ws.close()
  const settled = await Promise.race([closing.then(() => true), wait(5000).then(() => false)])
  t.equal(settled, true, 'close() settled')
  t.equal(app.server.listening, false)
})

t.test('app.wsGate counts what it says, for a server that shed nothing', async (t) => {
  const { app, port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: async () => accept() }, () => {})
  })
  const ok = opened(await connectWs(port, '/ws'))
  ok.ws.close()
  t.strictSame({ pending: app.wsGate.pending, shed: app.wsGate.shed }, { pending: 0, shed: 0 })
  t.equal(denied(await connectWs(port, '/nowhere')).statusCode, 404)
})

t.test('an upgrade during a preClose hook that runs before the gate\'s is answered and its socket closed', async (t) => {
  const app = Fastify()
  let port = 0
  let seen: { text: string, closed: boolean } | undefined
  app.addHook('preClose', async () => {
    seen = await rawExchange(port, upgradeRequest('/ws'), 3000)
  })
  await app.register(fastifyWsGate)
  app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  port = (app.server.address() as { port: number }).port
  await app.close()
  t.equal(parseRaw(seen?.text as string).statusLine, 'HTTP/1.1 503 Service Unavailable', 'Fastify\'s own answer while closing')
  t.equal(seen?.closed, true, 'the server closed the connection')
})

t.test('shutdown cuts off a client that does not answer close code 1001, after a 2 s grace', async (t) => {
  const app = Fastify()
  await app.register(fastifyWsGate)
  app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  // A raw client: it reads the 101 and then never answers anything.
  const { socket, first } = await upgradeAndWait(port, '/ws')
  t.match(first.toString('latin1'), /^HTTP\/1\.1 101 Switching Protocols\r\n/)
  const gone = collect(socket, null, 5000)
  await app.close()
  const { bytes, closed } = await gone
  t.equal(closed, true, 'the server hung up, and close() resolved')
  t.equal(bytes.toString('latin1'), '\x88\x16\x03\xe9Server shutting down', 'after the 1001 close frame')
})
