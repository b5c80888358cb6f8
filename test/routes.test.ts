// Contract points 10 and 11, and point 4 for denials Fastify itself sends:
// plain routes never answer an upgrade with 101, unknown paths get Fastify's
// 404, routes without `handshake` behave as with @fastify/websocket alone.
import t from 'tap'
import { accept } from '../lib/index.js'
import { connectWs, denied, opened, parseRaw, rawExchange, stableHead, start, upgradeRequest } from './helpers.js'

t.test('an upgrade to a plain HTTP route gets 400 saying so, never a 101', async (t) => {
  let handlerRuns = 0
  const { port, logs } = await start(t, (app) => {
    app.get('/plain', async () => { handlerRuns++; return 'plain' })
  })
  const res = await rawExchange(port, upgradeRequest('/plain'))
  const { statusLine, headerLines, body } = parseRaw(res.text)
  const expected = '{"statusCode":400,"code":"FST_WS_GATE_NOT_WEBSOCKET_ROUTE","error":"Bad Request","message":"Route GET /plain has no WebSocket handler"}'
  t.equal(statusLine, 'HTTP/1.1 400 Bad Request')
  t.strictSame(stableHead(headerLines), [
    'Content-Type: application/json; charset=utf-8', `Content-Length: ${expected.length}`, 'Date: <date>', 'Connection: close'
  ])
  t.equal(body, expected)
  t.equal(res.closed, true)
  t.equal(handlerRuns, 0)
  t.ok(logs.some((line) => line.level === 20 && line.msg === 'upgrade request to a route without a WebSocket handler'))

  const plain = await fetch(`http://127.0.0.1:${port}/plain`)
  t.equal(await plain.text(), 'plain', 'plain HTTP to the route is untouched')
  t.equal(handlerRuns, 1)
})

t.test('the route URL in the message is the route pattern', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/items/:id', async () => 'item')
  })
  const res = denied(await connectWs(port, '/items/7'))
  t.equal(res.statusCode, 400)
  t.equal(JSON.parse(res.body).message, 'Route GET /items/:id has no WebSocket handler')
})

t.test('an upgrade to an unknown path gets Fastify\'s 404 with Connection: close', async (t) => {
  const { port } = await start(t, () => {})
  const res = await rawExchange(port, upgradeRequest('/nowhere'))
  const { statusLine, headerLines, body } = parseRaw(res.text)
  const expected = '{"message":"Route GET:/nowhere not found","error":"Not Found","statusCode":404}'
  t.equal(statusLine, 'HTTP/1.1 404 Not Found')
  t.strictSame(stableHead(headerLines), [
    'content-type: application/json; charset=utf-8', 'connection: close', `content-length: ${expected.length}`, 'Date: <date>'
  ])
  t.equal(body, expected)
  t.equal(res.closed, true)
})

t.test('a hook that replies to an upgrade sends Connection: close and the socket is closed', async (t) => {
  const { port } = await start(t, (app) => {
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers.authorization === undefined) {
        return reply.code(401).header('www-authenticate', 'Basic').send({ error: 'login' })
      }
    })
    app.get('/ws', { websocket: true, handshake: () => accept() }, (socket) => socket.send('in'))
  })
  const res = await rawExchange(port, upgradeRequest('/ws'))
  const { statusLine, headerLines, body } = parseRaw(res.text)
  t.equal(statusLine, 'HTTP/1.1 401 Unauthorized')
  t.strictSame(stableHead(headerLines), [
    'www-authenticate: Basic', 'content-type: application/json; charset=utf-8', 'connection: close', 'content-length: 17', 'Date: <date>'
  ])
  t.equal(body, '{"error":"login"}')
  t.equal(res.closed, true)
  const ok = opened(await connectWs(port, '/ws', { headers: { authorization: 'Basic x' } }))
  t.equal(await ok.first, 'in')
  ok.ws.close()
})

t.test('a websocket route without handshake is accepted as with @fastify/websocket', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/open', { websocket: true }, (socket, request) => socket.send(`hello ${request.query ? 'there' : ''}`))
  })
  const outcome = opened(await connectWs(port, '/open', { protocols: ['one', 'two'] }))
  t.equal(outcome.protocol, 'one', 'ws echoes the first offered subprotocol, as @fastify/websocket does')
  t.equal(await outcome.first, 'hello there')
  outcome.ws.close()

  const plain = await fetch(`http://127.0.0.1:${port}/open`)
  t.equal(plain.status, 404, 'a plain GET to a WebSocket-only route is @fastify/websocket\'s 404')
})

t.test('a route with an HTTP handler and a wsHandler can have a handshake', async (t) => {
  const { port } = await start(t, (app) => {
    app.route({
      method: 'GET',
      url: '/both',
      handshake: (request) => request.headers['x-ok'] === '1' ? accept() : { nope: true } as never,
      handler: async () => 'http side',
      wsHandler: (socket) => { socket.send('ws side') }
    })
  })
  const ws = opened(await connectWs(port, '/both', { headers: { 'x-ok': '1' } }))
  t.equal(await ws.first, 'ws side')
  ws.ws.close()
  t.equal(denied(await connectWs(port, '/both')).statusCode, 500)
  const http = await fetch(`http://127.0.0.1:${port}/both`)
  t.equal(await http.text(), 'http side')
})

t.test('app.route({ websocket: true, handshake }) works like the shorthand', async (t) => {
  const { port } = await start(t, (app) => {
    app.route({
      method: 'GET',
      url: '/r',
      websocket: true,
      handshake: (_request, { protocols }) => accept({ protocol: protocols[1] }),
      handler: (socket) => { socket.send(socket.protocol) }
    })
  })
  const outcome = opened(await connectWs(port, '/r', { protocols: ['a', 'b'] }))
  t.equal(outcome.protocol, 'b')
  t.equal(await outcome.first, 'b')
  outcome.ws.close()
})

t.test('a hook cannot make a denial look like a 101, nor corrupt the status line', async (t) => {
  const { port, logs } = await start(t, (app) => {
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers['x-case'] === '101') return reply.code(101).send()
      if (request.headers['x-case'] === 'crlf') {
        reply.raw.statusMessage = 'Nope\r\nSet-Cookie: evil=1'
        return reply.code(403).send('no')
      }
    })
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  })
  const bare = await rawExchange(port, upgradeRequest('/ws', { 'X-Case': '101' }))
  const first = parseRaw(bare.text)
  t.equal(first.statusLine, 'HTTP/1.1 500 Internal Server Error')
  t.equal(first.body, '{"statusCode":500,"error":"Internal Server Error","message":"Internal Server Error"}')
  t.equal(bare.closed, true)
  t.equal((logs.find((line) => line.level === 50)?.err as { code: string, message: string }).message, 'Invalid reply to an upgrade request: status 101')

  logs.length = 0
  const crlf = await rawExchange(port, upgradeRequest('/ws', { 'X-Case': 'crlf' }))
  const second = parseRaw(crlf.text)
  t.equal(second.statusLine, 'HTTP/1.1 403 Forbidden', 'the standard phrase replaces the bad one')
  t.notMatch(crlf.text, /evil/)
  t.equal(second.body, 'no')
  t.equal((logs.find((line) => line.level === 50)?.err as { code: string }).code, 'FST_WS_GATE_INVALID_REPLY')

  const ok = await connectWs(port, '/ws')
  t.equal(ok.accepted, true, 'the server is still serving')
  if (ok.accepted) ok.ws.close()
})

t.test('a reply that goes through onSend twice (an onSend hook that fails) is counted out once', async (t) => {
  let failed = false
  const { app, port } = await start(t, (app) => {
    app.addHook('onRequest', async (_request, reply) => reply.code(401).send('first'))
    app.addHook('onSend', async (request, _reply, payload) => {
      if (request.headers.upgrade !== undefined && !failed) {
        failed = true
        throw new Error('onSend failed')
      }
      return payload
    })
    app.get('/ws', { websocket: true }, () => {})
  })
  const res = parseRaw((await rawExchange(port, upgradeRequest('/ws'))).text)
  t.equal(res.statusLine, 'HTTP/1.1 401 Unauthorized', 'Fastify keeps the status and sends the error')
  t.equal(res.body, '{"statusCode":401,"error":"Unauthorized","message":"onSend failed"}')
  t.ok(res.headerLines.includes('connection: close'))
  t.equal(failed, true)
  t.equal(app.wsGate.pending, 0)
})
