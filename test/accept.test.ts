// Contract points 1 and 2: when the handler runs, what it sees, and what accept() puts in the 101.
import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { accept, reject } from '../lib/index.js'
import { ACCEPT, collect, connectWs, opened, parseRaw, rawExchange, start, upgradeRequest, wait } from './helpers.js'

t.test('the handler runs after app hooks and schema validation, and sees coerced values', async (t) => {
  const order: string[] = []
  const seen: unknown[] = []
  const { port } = await start(t, (app) => {
    app.addHook('onRequest', async () => { order.push('onRequest') })
    app.addHook('preValidation', async () => { order.push('preValidation') })
    app.addHook('preHandler', async () => { order.push('preHandler') })
    app.get<{ Querystring: { n: number }, Params: { room: string } }>('/rooms/:room', {
      websocket: true,
      schema: {
        params: { type: 'object', properties: { room: { type: 'string', minLength: 2 } } },
        querystring: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] }
      },
      preHandler: async () => { order.push('route preHandler') },
      handshake: (request) => {
        order.push('handshake')
        seen.push(request.query.n, request.params.room)
        return accept()
      }
    }, (socket) => {
      order.push('ws handler')
      socket.send('welcome')
    })
  })

  const outcome = opened(await connectWs(port, '/rooms/lobby?n=42'))
  t.equal(await outcome.first, 'welcome')
  outcome.ws.close()
  t.strictSame(order, ['onRequest', 'preValidation', 'preHandler', 'route preHandler', 'handshake', 'ws handler'])
  t.strictSame(seen, [42, 'lobby'], 'querystring coerced to an integer by the schema')

  const invalid = await connectWs(port, '/rooms/lobby?n=many')
  t.equal(invalid.accepted, false)
  t.equal(invalid.accepted === false && invalid.statusCode, 400, 'validation fails before the handshake runs')
  t.equal(order.filter((step) => step === 'handshake').length, 1, 'the handler did not run for the invalid request')
})

t.test('a sync handler and an async handler both decide', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/sync', { websocket: true, handshake: () => accept() }, (socket) => socket.send('sync'))
    app.get('/async', {
      websocket: true,
      handshake: async () => { await new Promise((resolve) => setImmediate(resolve)); return accept() }
    }, (socket) => socket.send('async'))
  })
  for (const path of ['/sync', '/async']) {
    const outcome = opened(await connectWs(port, path))
    t.equal(await outcome.first, path.slice(1))
    outcome.ws.close()
  }
})

t.test('ctx.protocols lists the offered subprotocols, parsed and trimmed, in order', async (t) => {
  const seen: Array<readonly string[]> = []
  const { port } = await start(t, (app) => {
    app.get('/p', { websocket: true, handshake: (_request, { protocols }) => { seen.push(protocols); return reject() } }, () => {})
  })
  await rawExchange(port, upgradeRequest('/p', { 'Sec-WebSocket-Protocol': ' chat.v1 ,chat.v2,\tx-y ' }))
  await rawExchange(port, upgradeRequest('/p'))
  // Two header lines are one list (RFC 9110 §5.3).
  await rawExchange(port, upgradeRequest('/p', { 'Sec-WebSocket-Protocol': 'a', 'sec-websocket-protocol': 'b' }))
  t.strictSame(seen, [['chat.v1', 'chat.v2', 'x-y'], [], ['a', 'b']])
})

t.test('accept({ protocol }) selects that subprotocol', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/chat', {
      websocket: true,
      handshake: (_request, { protocols }) => accept({ protocol: protocols.includes('chat.v2') ? 'chat.v2' : undefined })
    }, (socket) => socket.send(`protocol=${socket.protocol}`))
  })
  const outcome = opened(await connectWs(port, '/chat', { protocols: ['chat.v1', 'chat.v2'] }))
  t.equal(outcome.protocol, 'chat.v2')
  t.equal(outcome.headers['sec-websocket-protocol'], 'chat.v2')
  t.equal(await outcome.first, 'protocol=chat.v2', 'the server-side socket knows the protocol too')
  outcome.ws.close()
})

t.test('accept() without protocol sends no Sec-WebSocket-Protocol, even when some were offered', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/chat', { websocket: true, handshake: () => accept() }, () => {})
  })
  const { text } = await rawExchange(port, upgradeRequest('/chat', { 'Sec-WebSocket-Protocol': 'chat.v1, chat.v2' }), 300)
  const { statusLine, headerLines, body } = parseRaw(text)
  t.equal(statusLine, 'HTTP/1.1 101 Switching Protocols')
  t.strictSame(headerLines, ['Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${ACCEPT}`])
  t.equal(body, '')
})

t.test('accept({ headers }) puts them in the 101, in order, duplicates kept', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/h', {
      websocket: true,
      handshake: () => accept({ protocol: 'v1', headers: [['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2'], ['X-Node', 'n1']] })
    }, () => {})
    app.get('/record', {
      websocket: true,
      handshake: () => accept({ headers: { 'set-cookie': ['c=3', 'd=4'], 'x-count': 7 } })
    }, () => {})
  })
  const first = parseRaw((await rawExchange(port, upgradeRequest('/h', { 'Sec-WebSocket-Protocol': 'v1' }), 300)).text)
  t.strictSame(first.headerLines, [
    'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${ACCEPT}`,
    'Sec-WebSocket-Protocol: v1', 'Set-Cookie: a=1', 'Set-Cookie: b=2', 'X-Node: n1'
  ])
  const second = parseRaw((await rawExchange(port, upgradeRequest('/record'), 300)).text)
  t.strictSame(second.headerLines, [
    'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${ACCEPT}`,
    'set-cookie: c=3', 'set-cookie: d=4', 'x-count: 7'
  ])
})

t.test('the decision of one route does not leak into another', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/a', { websocket: true, handshake: () => accept({ protocol: 'a', headers: { 'x-route': 'a' } }) }, () => {})
    app.get('/b', { websocket: true }, () => {})
  })
  const a = opened(await connectWs(port, '/a', { protocols: ['a', 'b'] }))
  const b = opened(await connectWs(port, '/b', { protocols: ['b', 'a'] }))
  t.equal(a.protocol, 'a')
  t.equal(a.headers['x-route'], 'a')
  t.equal(b.protocol, 'b', 'a route without handshake keeps @fastify/websocket behaviour (first offer)')
  t.equal(b.headers['x-route'], undefined)
  a.ws.close()
  b.ws.close()
})

t.test('bytes the client sends before the 101 reach the WebSocket as frames', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/early', {
      websocket: true,
      handshake: async () => { await new Promise((resolve) => setTimeout(resolve, 50)); return accept() }
    }, (socket) => { socket.on('message', (data) => socket.send(`echo:${String(data)}`)) })
  })
  // A masked text frame "hi" (RFC 6455 §5.7), sent right behind the request.
  const frame = Buffer.from([0x81, 0x82, 0x01, 0x02, 0x03, 0x04, 'h'.charCodeAt(0) ^ 0x01, 'i'.charCodeAt(0) ^ 0x02])
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(upgradeRequest('/early'))
  await wait(10)
  socket.write(frame)
  const result = await collect(socket, null, 400)
  const end = result.bytes.indexOf('\r\n\r\n')
  t.match(result.text, /^HTTP\/1\.1 101 Switching Protocols\r\n/)
  // Server frames are unmasked: FIN+text, length 7, "echo:hi".
  t.strictSame(result.bytes.subarray(end + 4), Buffer.concat([Buffer.from([0x81, 0x07]), Buffer.from('echo:hi')]))
})
